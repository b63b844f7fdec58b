package persist

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// A host evicted while its session is open is fenced when it comes back,
// whether it opens the sandbox again or closes it: its changes go to its
// recovery area and can be listed and read there, a fresh session opens
// from the ledger's state, and a close run again after the fence keeps
// what the first one kept. Two ways the lease goes: `fleet evict`
// (EvictHost, which abandons the session at once) and a lease freed
// without that (only the store's eviction, as before EvictHost abandoned).
func TestEvictedHostIsFenced(t *testing.T) {
	for _, how := range []string{"evict", "lease freed"} {
		t.Run(how, func(t *testing.T) {
			f, me := evictedWhileOpen(t, "written before the eviction", how == "evict")
			var warned []string
			f.e.warn = func(m string) { warned = append(warned, m) }

			// The host comes back and opens the sandbox again: not the
			// doomed root, a fresh one, with a warning.
			o, err := f.e.OpenSandbox(f.ctx, "docs")
			if err != nil {
				t.Fatal(err)
			}
			if o.Session != 2 || o.Already {
				t.Fatalf("open after the eviction: session %d (already open: %v), want a fresh session 2", o.Session, o.Already)
			}
			if _, err := os.Stat(filepath.Join(o.Path, "home/user/Documents/letter.txt")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the fenced session's letter is in the new root: %v", err)
			}
			if len(warned) != 1 || !strings.Contains(warned[0], "fenced") || !strings.Contains(warned[0], "recover ls docs --session 1") || strings.Contains(warned[0], "host "+me+" holds it") {
				t.Fatalf("warnings: %q", warned)
			}
			// Its changes are listed and readable in the recovery area
			// right away (the ledger says session 1 ended).
			rc, x, err := f.e.RecoverOpen(f.ctx, "docs", "/home/user/Documents/letter.txt", 1)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if string(b) != "written before the eviction" || x.Reason != RefuseFenced {
				t.Fatalf("recovered %q (%+v)", b, x)
			}
			// The new session closes as any other: the sandbox is not stuck.
			write(t, o.Path, "home/user/Documents/second.txt", "after", 0o644)
			f.close()
			var sb *store.Sandbox
			f.e.store.View(func(tx *store.Tx) (err error) { sb, err = tx.GetSandbox("docs"); return })
			if sb.State != store.StateClosed || sb.Generation != 1 || len(sb.Abandoned) != 1 || sb.Abandoned[0] != 1 {
				t.Fatalf("after the new session's close: %+v", sb)
			}
			// A fence of session 1 run again (a close retried) finds no
			// root and leaves the recovery area as it was.
			err = f.e.fence(f.ctx, "docs", 1, &store.FencedError{Sandbox: "docs", Host: me, Token: 1})
			var fs *FencedSession
			if !errors.As(err, &fs) || fs.Entries != 1 {
				t.Fatalf("fence run again: %v", err)
			}
			if _, _, err := f.e.RecoverOpen(f.ctx, "docs", "/home/user/Documents/letter.txt", 1); err != nil {
				t.Fatalf("after a fence run again: %v", err)
			}
		})
	}
}

// evictedWhileOpen returns a fixture whose host (me) opened docs, wrote
// letter.txt and was then evicted by host h2: through EvictHost when
// fleetEvict, else by the store's eviction alone (the lease freed, the
// session left open).
func evictedWhileOpen(t *testing.T, letter string, fleetEvict bool) (*fixture, string) {
	t.Helper()
	f := newFixture(t, snapshot.KindOverlay)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "home/user/Documents/letter.txt", letter, 0o644)
	me := f.e.HostID()
	f.e.hostID = "h2" // the host that evicts this one
	if fleetEvict {
		if _, err := f.e.EvictHost(me, "looked dead", true); err != nil {
			t.Fatal(err)
		}
	} else {
		mustUpdate(t, f.e, func(tx *store.Tx) error { _, err := tx.EvictHost(me, "looked dead"); return err })
	}
	f.e.hostID = me
	return f, me
}

// A host evicted while its session is open, closing without opening
// first: the close is fenced, and `recover ls --session N` (which its
// error names) lists the changes at once.
func TestEvictedHostCloseIsFenced(t *testing.T) {
	f, _ := evictedWhileOpen(t, "kept for recovery", true)
	for try := range 2 {
		_, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{})
		if try == 0 {
			var fs *FencedSession
			if !errors.As(err, &fs) || fs.Entries != 1 {
				t.Fatalf("close after the eviction: %v", err)
			}
		}
		var n int
		if err := f.e.RecoverList(f.ctx, "docs", 1, "", func(x RecoverEntry) error { n++; return nil }); err != nil || n != 1 {
			t.Fatalf("close %d: recover ls --session 1: %d entries, %v", try+1, n, err)
		}
	}
}

// A close run again on a fenced host after another host opened the
// sandbox, and after that host closed it, answers with the fence (the
// session and the count of its changes kept), not "open on host h2 …
// evict h2" nor "already closed"; once this host has a session of its
// own again, its close is an ordinary one.
func TestFencedCloseRunAgainAfterTakeover(t *testing.T) {
	f, me := evictedWhileOpen(t, "kept for recovery", true)
	fenced := func(when string) {
		t.Helper()
		_, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{})
		var fs *FencedSession
		if !errors.As(err, &fs) || fs.Session != 1 || fs.Entries != 1 {
			t.Fatalf("close %s: %v", when, err)
		}
	}
	fenced("after the eviction")
	as := func(host string, fn func()) {
		f.e.hostID = host
		defer func() { f.e.hostID = me }()
		fn()
	}
	as("h2", func() { f.open() })
	fenced("while h2 has the sandbox open")
	as("h2", func() {
		if _, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	fenced("after h2 closed the sandbox")
	f.open()
	if _, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{}); err != nil {
		t.Fatalf("this host's own next session: %v", err)
	}
	if sum, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{}); err != nil || !sum.AlreadyClosed {
		t.Fatalf("its close run again: %+v, %v", sum, err)
	}
}

// Two state directories given one host id (two roots, or cloned
// machines): the second is refused while the first has the id, and may
// take it over only after an eviction, which the ledger's audit log tells
// (fleet.rejoin); the first is then refused in turn.
func TestHostIDOfAnotherRootIsRefused(t *testing.T) {
	url := pgtest.URL(t)
	open := func(host string) *Env {
		e, err := OpenEnv(t.Context(), Options{Root: filepath.Join(t.TempDir(), "state"), HostID: host, Store: url,
			Blobs: "dir://" + filepath.Join(t.TempDir(), "blobs"), LedgerOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	a, b, other := open("h1"), open("h1"), open("h3")
	if err := a.Heartbeat(0); err != nil {
		t.Fatal(err)
	}
	var taken *store.HostIDTakenError
	if err := b.Heartbeat(0); !errors.As(err, &taken) || !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "fleet evict h1") {
		t.Fatalf("a second directory as h1: %v", err)
	}
	// b's root was new: the refused id is not recorded there (the next
	// command may give another one)
	ids := func(e *Env) string {
		h, _ := os.ReadFile(filepath.Join(e.root, hostIDFile))
		r, _ := os.ReadFile(filepath.Join(e.root, rootIDFile))
		return string(h) + string(r)
	}
	if got := ids(b); got != "" {
		t.Fatalf("a refused new root still records %q", got)
	}
	if _, err := b.takeLease("docs"); !errors.As(err, &taken) {
		t.Fatalf("a lease taken from a second directory as h1: %v", err)
	}
	if err := a.Heartbeat(0); err != nil {
		t.Fatalf("the directory that has the id: %v", err)
	}
	hosts, _, _, err := b.FleetHosts()
	if err != nil || len(hosts) != 1 || !a.OwnsHostRow(hosts[0]) || b.OwnsHostRow(hosts[0]) {
		t.Fatalf("h1's row is a's, not b's (fleet hosts' \"this host\"): %+v %v", hosts, err)
	}
	if _, err := other.EvictHost("h1", "reinstalled", true); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(0); err != nil {
		t.Fatalf("after the eviction: %v", err)
	}
	if got, want := ids(b), "h1\n"+b.rootID+"\n"; got != want {
		t.Fatalf("b's root after its heartbeat took the id over records %q, want %q", got, want)
	}
	if err := a.Heartbeat(0); !errors.As(err, &taken) {
		t.Fatalf("the first directory after the second took the id over: %v", err)
	}
	var rejoined []map[string]string
	if err := other.store.ForEachEvent(t.Context(), "", func(ev *store.Event) error {
		if ev.Type == "fleet.rejoin" {
			rejoined = append(rejoined, ev.Data)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(rejoined) != 1 || rejoined[0]["host"] != "h1" || rejoined[0]["reason"] != "reinstalled" || rejoined[0]["new_state_directory"] != "true" {
		t.Fatalf("fleet.rejoin entries: %v", rejoined)
	}
}

// A host's import of an image the shared ledger has must be the same tree
// as the first host's, to the byte: a source of the same files and sizes
// with one byte changed is refused (and leaves no image on that host).
func TestImageImportMustMatchTheLedger(t *testing.T) {
	h1, h2 := fleetFixtures(t)
	a := filepath.Join(t.TempDir(), "a")
	if out, err := exec.Command("cp", "-a", busyboxRootfs(t), a).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b := filepath.Join(t.TempDir(), "b")
	if out, err := exec.Command("cp", "-a", a, b).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	p := filepath.Join(b, "etc/hostname")
	c, err := os.ReadFile(p)
	if err != nil || len(c) == 0 {
		t.Fatalf("%s: %q %v", p, c, err)
	}
	c[0] ^= 1
	if err := os.WriteFile(p, c, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := h1.e.ImportImage(h1.ctx, "other", snapshot.Source{Dir: a})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(img.Digest, "sha256:") {
		t.Fatalf("digest %q", img.Digest)
	}
	_, err = h2.e.ImportImage(h2.ctx, "other", snapshot.Source{Dir: b})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "differs from image other") {
		t.Fatalf("a source one byte off: %v", err)
	}
	if ok, err := h2.e.snap.Exists(h2.ctx, img.Snapshot); err != nil || ok {
		t.Fatalf("the refused import left its snapshot: %v %v", ok, err)
	}
	if _, err := h2.e.ImportImage(h2.ctx, "other", snapshot.Source{Dir: a}); err != nil {
		t.Fatalf("the same source: %v", err)
	}
}
