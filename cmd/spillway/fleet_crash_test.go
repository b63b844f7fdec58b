package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/internal/testenv"
)

// closeFailpoints are the failpoints a close of a session with persisted
// documents reaches, in order (docs/crash-safety.md).
var closeFailpoints = []string{
	"close.marked-closing", "close.unmounted", "close.records-cleared", "close.parked", "close.blob-stored",
	"close.batch-staged", "close.committed", "close.recovery-moved", "close.root-removed",
	"close.cleaned", "close.retention-applied",
}

// TestFleetCloseKilled: two hosts share a PostgreSQL ledger and a blob
// directory. h1's close is SIGKILLed at every close failpoint; then the
// ledger holds the old generation or the new one, never a mix, every
// record's blob is there and the audit chain verifies; h2 opens the
// sandbox after h1's short TTL (taking it over when the close had not
// committed) and sees exactly that generation; h1's own next command
// either finds its close done or is fenced, its documents in its recovery
// area; nothing is lost.
//
// The same again with every connection through a PgBouncer in transaction
// pooling (docs/fleet.md, "A connection pooler"): a client killed in a
// transaction leaves a server connection the pooler must not hand on.
func TestFleetCloseKilled(t *testing.T) {
	requireRoot(t)
	pgtest.Require(t)
	t.Cleanup(pgtest.Stop)
	rootfs := sharedRootfs(t)
	for _, pool := range []string{"direct", "transaction pooling"} {
		t.Run(pool, func(t *testing.T) {
			if pool != "direct" {
				if _, err := exec.LookPath("pgbouncer"); err != nil {
					testenv.Missing(t, "pgbouncer is not installed")
				}
			}
			for _, fp := range closeFailpoints {
				t.Run(fp, func(t *testing.T) { testFleetCloseKilled(t, rootfs, fp, pool == "direct") })
			}
		})
	}
}

func testFleetCloseKilled(t *testing.T, rootfs, fp string, direct bool) {
	w := newWorld(t, rootfs)
	h1, h2, h2root := twoHostsVia(t, w, direct)
	must := func(r result, what string) string {
		t.Helper()
		if r.code != 0 || r.killed {
			t.Fatalf("%s: exit %d killed=%v\n%s%s", what, r.code, r.killed, r.stdout, r.stderr)
		}
		return r.stdout
	}
	t.Cleanup(func() {
		h1(nil, "rm", "--force", "docs")
		for _, m := range []string{filepath.Join(w.dir, "state", "mnt", "docs"), filepath.Join(h2root, "mnt", "docs")} {
			exec.Command("umount", m).Run() // a leftover of a failed run only
		}
	})
	must(h1(nil, "image", "import", "base", rootfs), "h1 import")
	must(h1(nil, "create", "docs", "--image", "base"), "create")
	must(h1(nil, "exception", "add", "docs", "/home/user/Documents/**", "--reason", "documents"), "exception")
	must(h2("image", "import", "base", rootfs), "h2 import")
	must(h1(nil, "fleet", "agent", "--once", "--ttl", "2s"), "h1 ttl")
	must(h1(nil, "open", "docs"), "h1 open")
	v1 := w.writeDocs(1)
	if r := h1([]string{"SPILLWAY_FAILPOINT=" + fp + ":1"}, "close", "docs"); !r.killed {
		t.Fatalf("close not killed at %s: exit %d %s", fp, r.code, r.stderr)
	}
	ledger := docsOf(t, must(h2("persisted", "ls", "docs", "--json"), "h2 persisted ls"))
	committed := len(ledger) == len(v1)
	if len(ledger) != 0 && !committed {
		t.Fatalf("after the kill the ledger holds %d of %d documents", len(ledger), len(v1))
	}
	must(h2("audit", "verify"), "audit verify")
	// check finds every record's blob; the one problem it may
	// report is the close h1 has not finished.
	if r := h2("check"); r.code != 0 && (r.code != 3 || strings.Count(r.stdout, "problem:") != 1 || !strings.Contains(r.stdout, "close was interrupted")) {
		t.Fatalf("check after the kill: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// h2 takes over once h1's TTL has run out (or at once, when
	// the close committed and released the lease).
	time.Sleep(2200 * time.Millisecond)
	must(h2("open", "docs"), "h2 open")
	for p, content := range v1 {
		b, err := os.ReadFile(filepath.Join(h2root, "mnt", "docs", p))
		if committed && string(b) != content {
			t.Errorf("h2 sees %s = %q (%v), want %q", p, b, err, content)
		}
		if !committed && err == nil {
			t.Errorf("h2 sees %s from a close that never committed", p)
		}
	}
	// h2 persists a document of its own: a close that makes a new
	// generation must not bring in what h1's dead close staged.
	const mine = "/home/user/Documents/from-h2.txt"
	if err := os.WriteFile(filepath.Join(h2root, "mnt", "docs", mine), []byte("h2"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(h2("close", "docs"), "h2 close")
	got := docsOf(t, must(h2("persisted", "ls", "docs", "--json"), "h2 persisted ls after its close"))
	if _, ok := got[mine]; !ok || len(got) != len(ledger)+1 {
		t.Fatalf("after h2's close the state holds %v, want the %d documents before it and %s", got, len(ledger), mine)
	}
	// h1 comes back: its close is complete, or fenced with every
	// document in its recovery area.
	r := h1(nil, "close", "docs")
	switch {
	case committed && r.code != 0:
		t.Fatalf("h1 close after a committed close: exit %d %s", r.code, r.stderr)
	case !committed:
		if r.code == 0 || !strings.Contains(r.stderr, "fenced: host h1 lost the lease of sandbox docs") {
			t.Fatalf("h1 close of an abandoned session: exit %d %s", r.code, r.stderr)
		}
		for p, content := range v1 {
			out := filepath.Join(w.dir, "out"+filepath.Base(p))
			must(h1(nil, "recover", "export", "docs", p, out), "recover export "+p)
			if b, err := os.ReadFile(out); err != nil || string(b) != content {
				t.Errorf("recovered %s = %q (%v), want %q", p, b, err, content)
			}
		}
	}
	must(h1(nil, "open", "docs"), "h1 open again")
	must(h1(nil, "close", "docs"), "h1 close again")
	must(h1(nil, "check"), "h1 check")
	must(h2("check"), "h2 check at the end")
	must(h2("audit", "verify"), "audit verify at the end")
}

// twoHosts returns runners of the real binary as two hosts sharing a new
// PostgreSQL database and a blob directory: h1 is the world's root (env
// added to its environment), h2 the root h2root.
func twoHosts(t *testing.T, w *world) (h1 func(env []string, args ...string) result, h2 func(args ...string) result, h2root string) {
	t.Helper()
	return twoHostsVia(t, w, true)
}

// twoHostsVia is twoHosts connected directly, or else through a PgBouncer
// in transaction pooling (with the URL setting docs/fleet.md gives).
func twoHostsVia(t *testing.T, w *world, direct bool) (h1 func(env []string, args ...string) result, h2 func(args ...string) result, h2root string) {
	t.Helper()
	url, err := pgtest.NewDB()
	if err != nil {
		t.Fatal(err)
	}
	if !direct {
		u, stop, err := pgtest.BouncerMode(url, "transaction")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		url = u + "&default_query_exec_mode=exec"
	}
	shared := []string{"SPILLWAY_STORE=" + url, "SPILLWAY_BLOBS=dir://" + filepath.Join(w.dir, "blobs")}
	h2root = filepath.Join(w.dir, "h2")
	h1 = func(env []string, args ...string) result {
		return w.sw(append(append([]string{"SPILLWAY_HOST_ID=h1"}, shared...), env...), args...)
	}
	h2 = func(args ...string) result {
		return w.sw(append([]string{"SPILLWAY_HOST_ID=h2", "SPILLWAY_ROOT=" + h2root}, shared...), args...)
	}
	return h1, h2, h2root
}

// docsOf reads `persisted ls --json` as path → digest.
func docsOf(t *testing.T, js string) map[string]string {
	t.Helper()
	var recs []struct{ Path, Digest, Type string }
	if err := json.Unmarshal([]byte(js), &recs); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range recs {
		if r.Type == "file" {
			out[r.Path] = r.Digest
		}
	}
	return out
}
