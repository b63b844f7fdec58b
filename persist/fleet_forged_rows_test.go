package persist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// A compromised fleet host has the ledger's credentials and the shared
// blob directory: it can write any row. These tests forge rows from h1
// (the attacker, through the store API it shares with every host, or raw
// SQL) and run commands on h2 (the victim, a root of its own): nothing
// may be written outside h2's own snapshots, a command fails with an
// error, never a panic or a hang.
//
// The tests whose comment says "was a hole" failed before the fixes of
// 29 November: the ledger's sandbox and image rows are checked (names,
// snapshot keys, layers) and a root is mounted, unmounted and scanned at
// this host's mount point, never at the Path a row names.

// forgedFleet returns the attacker h1 and the victim h2 (as
// fleetFixtures makes them: roots of their own, one ledger, one blob
// directory, the image imported on both, sandbox "docs") and a canary
// directory outside both roots holding one file. The ledger's URL is in
// forgedURL[h1].
func forgedFleet(t *testing.T) (h1, h2 *fixture, canaryDir string) {
	t.Helper()
	fs, url := fleetHosts(t, snapshot.KindOverlay, snapshot.KindOverlay)
	h1, h2 = fs[0], fs[1]
	forgedURL[h1] = url
	t.Cleanup(func() { delete(forgedURL, h1) })
	canaryDir = filepath.Join(t.TempDir(), "host-dir")
	if err := os.Mkdir(canaryDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(canaryDir, "canary"), []byte("host data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return h1, h2, canaryDir
}

var forgedURL = map[*fixture]string{}

// sqlConn connects to the ledger as the attacker does, with its URL.
func sqlConn(t *testing.T, h *fixture) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), forgedURL[h])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// assertCanaryDir fails unless dir still holds exactly its canary file,
// with mode 0755, and is no mount point.
func assertCanaryDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "canary" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("host directory %s changed: holds %q", dir, names)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "canary")); err != nil || string(b) != "host data\n" {
		t.Errorf("host canary: %q, %v", b, err)
	}
	if fi, err := os.Lstat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("host directory %s: mode %v, %v (want 0755)", dir, fi.Mode(), err)
	}
	if m, err := snapshot.IsMounted(dir); err != nil || m {
		t.Errorf("host directory %s is a mount point now (%v)", dir, err)
	}
}

// forgeRecords commits recs as the state of sandbox at its next
// generation, as a compromised host running its own code would: through
// the store API, with no close, no session and no blob check.
func forgeRecords(t *testing.T, h *fixture, sandbox string, recs ...*store.Record) {
	t.Helper()
	mustUpdate(t, h.e, func(tx *store.Tx) error {
		sb, err := tx.GetSandbox(sandbox)
		if err != nil {
			return err
		}
		gen := sb.Generation + 1
		now := time.Now().UTC()
		for _, r := range recs {
			r.Sandbox, r.Session, r.Status, r.Review = sandbox, sb.Session, change.StatusApproved, change.ReviewAfter
			if r.Kind == "" {
				r.Kind = change.KindAdd
			}
			if r.Mode == 0 {
				r.Mode = 0o644
			}
			r.Created, r.Mtime = now, now
		}
		if err := tx.StageRecords(sandbox, gen, recs, nil); err != nil {
			return err
		}
		sb.Generation = gen
		return tx.PutSandbox(sb)
	})
}

// putBlob stores content in the shared blob directory from h.
func putBlob(t *testing.T, h *fixture, content string) (string, int64) {
	t.Helper()
	d, n, err := h.e.blobs.Put(strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.e.blobs.Sync(); err != nil {
		t.Fatal(err)
	}
	return d, n
}

// openWithUnsaved opens docs on h and writes unsaved work into its root
// (home/user/Documents/unsaved.txt, as unsavedKept looks for it), and
// returns the session's number.
func openWithUnsaved(t *testing.T, h *fixture) uint64 {
	t.Helper()
	o, err := h.e.OpenSandbox(h.ctx, "docs")
	if err != nil {
		t.Fatal(err)
	}
	write(t, o.Path, "/home/user/Documents/unsaved.txt", "unsaved work\n", 0o644)
	return o.Session
}

// runGC runs h's gc, failing the test if it takes over 2 minutes, and
// logs what it removed and its error: after a forged row it may fail, and
// the tests check what it kept.
func runGC(t *testing.T, h *fixture) {
	t.Helper()
	var (
		f   *Freed
		err error
	)
	withTimeout(t, 2*time.Minute, "gc", func(ctx context.Context) { f, err = h.e.GC(ctx) })
	if f != nil {
		t.Logf("gc: removed snapshots %q, recovery %+v: %v", f.Snapshots, f.Recovery, err)
	} else {
		t.Logf("gc: %v", err)
	}
}

// withTimeout runs fn, failing the test if it takes longer than d (a hang).
func withTimeout(t *testing.T, d time.Duration, what string, fn func(ctx context.Context)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ctx)
	}()
	select {
	case <-done:
	case <-time.After(d + 30*time.Second):
		t.Fatalf("%s: still running after %v (a hang)", what, d+30*time.Second)
	}
}

// Records whose path is not a clean absolute one ("..", "//", relative,
// a NUL planted by SQL) or is too long are skipped by open, listed in
// Skipped; nothing reaches the host directory the ".." paths name, and
// the export into a directory writes nothing outside it.
func TestForgedRecordPaths(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	blob, n := putBlob(t, h1, "forged content\n")
	climb := "/home/user/Documents/" + strings.Repeat("../", 12) + strings.TrimPrefix(canaryDir, "/") + "/climbed"
	long := "/home/user/Documents/" + strings.Repeat("d", 300) + "/x"
	deep := "/home/user/Documents" + strings.Repeat("/d", 2100) // past PATH_MAX
	paths := []string{
		climb,
		"//" + strings.TrimPrefix(canaryDir, "/") + "/slashes",
		strings.TrimPrefix(canaryDir, "/") + "/relative",
		"/home/user/Documents/./dot",
		"/home/user/Documents/trailing/",
		long,
		deep,
		"/home/user/Documents/nul@mark",
	}
	var recs []*store.Record
	for _, p := range paths {
		recs = append(recs, &store.Record{Path: p, Type: change.TypeFile, Digest: blob, Size: n})
	}
	recs = append(recs, &store.Record{Path: "/home/user/Documents/ok.txt", Type: change.TypeFile, Digest: blob, Size: n})
	forgeRecords(t, h1, "docs", recs...)
	// The store API refuses a NUL; SQL does not: turn '@' into NUL in the
	// record and its copy in the current-state index.
	conn := sqlConn(t, h1)
	tag, err := conn.Exec(t.Context(), `UPDATE kv SET v = overlay(v placing '\x00'::bytea from position('nul@mark'::bytea in v) + 3 for 1) WHERE position('nul@mark'::bytea in v) > 0`)
	if err != nil || tag.RowsAffected() < 1 {
		t.Fatalf("plant a NUL: %v %v", tag, err)
	}

	var o *Opened
	withTimeout(t, time.Minute, "open", func(ctx context.Context) { o, err = h2.e.OpenSandbox(ctx, "docs") })
	if err != nil {
		t.Fatalf("open on the victim: %v", err)
	}
	skipped := strings.Join(o.Skipped, "\n")
	for _, p := range paths[:5] {
		if !strings.Contains(skipped, p) {
			t.Errorf("forged path %q was not reported skipped (skipped: %s)", p, skipped)
		}
	}
	if len(o.Skipped) < len(paths)-1 {
		t.Errorf("skipped %d of %d forged paths: %q", len(o.Skipped), len(paths), o.Skipped)
	}
	if b, err := os.ReadFile(filepath.Join(o.Path, "home/user/Documents/ok.txt")); err != nil || string(b) != "forged content\n" {
		t.Errorf("the clean record beside them: %q %v", b, err)
	}
	assertCanaryDir(t, canaryDir)
	if _, err := os.Lstat(filepath.Join(filepath.Dir(canaryDir), "climbed")); err == nil {
		t.Errorf("a file was written beside the host directory")
	}
	h2.close()

	// persisted export into a directory: nothing outside it.
	dest := filepath.Join(t.TempDir(), "export")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	set, err := h2.e.Export(h2.ctx, "docs", "/", At{})
	if err == nil {
		_, err = h2.e.ExportDir(h2.ctx, set, dest)
	}
	t.Logf("export of the forged state: %v", err)
	assertCanaryDir(t, canaryDir)
	if err == nil {
		if b, rerr := os.ReadFile(filepath.Join(dest, "home/user/Documents/ok.txt")); rerr != nil || string(b) != "forged content\n" {
			t.Errorf("export: %q %v", b, rerr)
		}
	}
	// check on the victim completes (it may report the forged records).
	withTimeout(t, time.Minute, "check", func(ctx context.Context) {
		problems, err := h2.e.Check(ctx)
		t.Logf("check: %v %q", err, problems)
	})
}

// A symlink record pointing out of the sandbox (absolute, or climbing)
// with a file record beneath it: open lays the link as a link, the child
// is left out, the host directory it names is untouched; an export
// likewise.
func TestForgedSymlinkRecords(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	blob, n := putBlob(t, h1, "through the link\n")
	forgeRecords(t, h1, "docs",
		&store.Record{Path: "/home/user/Documents/abs", Type: change.TypeSymlink, Link: canaryDir},
		&store.Record{Path: "/home/user/Documents/abs/pwned", Type: change.TypeFile, Digest: blob, Size: n},
		&store.Record{Path: "/home/user/Documents/up", Type: change.TypeSymlink, Link: strings.Repeat("../", 12) + strings.TrimPrefix(canaryDir, "/")},
		&store.Record{Path: "/home/user/Documents/up/pwned2", Type: change.TypeFile, Digest: blob, Size: n},
		&store.Record{Path: "/home/user/Documents/up/sub", Type: change.TypeDir, Mode: 0o755},
	)
	o, err := h2.e.OpenSandbox(h2.ctx, "docs")
	if err != nil {
		t.Fatalf("open on the victim: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(o.Path, "home/user/Documents/abs")); err != nil || target != canaryDir {
		t.Errorf("the link in the root: %q %v", target, err)
	}
	assertCanaryDir(t, canaryDir)
	h2.close()
	dest := filepath.Join(t.TempDir(), "export")
	os.Mkdir(dest, 0o755)
	set, err := h2.e.Export(h2.ctx, "docs", "/", At{})
	if err == nil {
		_, err = h2.e.ExportDir(h2.ctx, set, dest)
	}
	t.Logf("export: %v", err)
	assertCanaryDir(t, canaryDir)
	// The export of the path under the link alone.
	dest2 := filepath.Join(t.TempDir(), "export2")
	os.Mkdir(dest2, 0o755)
	if set, err := h2.e.Export(h2.ctx, "docs", "/home/user/Documents/abs", At{}); err == nil {
		_, err = h2.e.ExportDir(h2.ctx, set, dest2)
		t.Logf("export of the link: %v", err)
	}
	assertCanaryDir(t, canaryDir)
}

// Records of a device, a FIFO and a socket are not laid (a device node
// in a root would open the host's device); the rest of the state is.
func TestForgedSpecialFileRecords(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	blob, n := putBlob(t, h1, "fine\n")
	forgeRecords(t, h1, "docs",
		&store.Record{Path: "/home/user/Documents/dev", Type: change.TypeDevice},
		&store.Record{Path: "/home/user/Documents/fifo", Type: change.TypeFIFO},
		&store.Record{Path: "/home/user/Documents/sock", Type: change.TypeSocket},
		&store.Record{Path: "/home/user/Documents/odd", Type: change.FileType("weird\x1b[31m")},
		&store.Record{Path: "/home/user/Documents/ok.txt", Type: change.TypeFile, Digest: blob, Size: n},
	)
	o, err := h2.e.OpenSandbox(h2.ctx, "docs")
	if err != nil {
		t.Fatalf("open on the victim: %v", err)
	}
	for _, p := range []string{"dev", "fifo", "sock", "odd"} {
		if _, err := os.Lstat(filepath.Join(o.Path, "home/user/Documents", p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("forged %s record laid in the root: %v", p, err)
		}
	}
	if len(o.Skipped) != 4 {
		t.Errorf("skipped %q, want the 4 special files", o.Skipped)
	}
	if _, err := os.Stat(filepath.Join(o.Path, "home/user/Documents/ok.txt")); err != nil {
		t.Error(err)
	}
	h2.close()
}

// A record naming a blob that is missing, or whose file in the shared
// directory holds other bytes, fails the open (DataLoss, naming the
// record), never lays the forged bytes; persisted cat (OpenRecord) and
// export fail the same way.
func TestForgedBlobs(t *testing.T) {
	for _, c := range []string{"missing", "different", "longer", "huge-size"} {
		t.Run(c, func(t *testing.T) {
			h1, h2, _ := forgedFleet(t)
			want := "the real content\n"
			sum := sha256.Sum256([]byte(want))
			digest := "sha256:" + hex.EncodeToString(sum[:])
			size := int64(len(want))
			p, err := h1.e.blobs.Path(digest)
			if err != nil {
				t.Fatal(err)
			}
			switch c {
			case "different":
				os.WriteFile(p, []byte("forged bytes!!!!!\n"), 0o644) // same length
			case "longer":
				os.WriteFile(p, []byte(want+"and more forged bytes"), 0o644)
			case "huge-size":
				os.WriteFile(p, []byte(want), 0o644)
				size = 1 << 62
			}
			forgeRecords(t, h1, "docs", &store.Record{Path: "/home/user/Documents/f", Type: change.TypeFile, Digest: digest, Size: size})
			var o *Opened
			withTimeout(t, time.Minute, "open", func(ctx context.Context) { o, err = h2.e.OpenSandbox(ctx, "docs") })
			if err == nil {
				b, _ := os.ReadFile(filepath.Join(o.Path, "home/user/Documents/f"))
				h2.close()
				t.Fatalf("open laid a record whose blob is %s: %q", c, b)
			}
			if !errdefs.IsDataLoss(err) || !strings.Contains(err.Error(), "/home/user/Documents/f") {
				t.Errorf("open: %v (want a data-loss error naming the record)", err)
			}
			if ms := mustMounts(t, h2.e.root); len(ms) != 0 {
				t.Errorf("mounts left: %v", ms)
			}
			// persisted cat
			var r *store.Record
			h2.e.store.View(func(tx *store.Tx) error {
				return tx.ForEachRecord(h2.ctx, "docs", func(x *store.Record) error { r = x; return nil })
			})
			rc, err := h2.e.OpenRecord(r)
			if err == nil {
				b, rerr := io.ReadAll(rc)
				rc.Close()
				err = rerr
				if bytes.Contains(b, []byte("forged")) && rerr == nil {
					t.Errorf("cat gave forged bytes without an error: %q", b)
				}
			}
			if !errdefs.IsDataLoss(err) {
				t.Errorf("cat: %v (want data loss)", err)
			}
			dest := filepath.Join(t.TempDir(), "export")
			os.Mkdir(dest, 0o755)
			set, err := h2.e.Export(h2.ctx, "docs", "/", At{})
			if err == nil {
				_, err = h2.e.ExportDir(h2.ctx, set, dest)
			}
			if !errdefs.IsDataLoss(err) {
				t.Errorf("export: %v (want data loss)", err)
			}
			if _, err := os.Lstat(filepath.Join(dest, "home/user/Documents/f")); err == nil {
				t.Errorf("export left the unverified file in place")
			}
		})
	}
}

// Mode bits beyond the permissions (setuid, setgid, sticky, a type) are
// not laid on a file; a directory gets setgid and sticky (DirModeBits: a
// shared directory, /tmp), never setuid or a type; uid and gid are the
// record's (the image's root may own it).
func TestForgedModes(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	blob, n := putBlob(t, h1, "#!/bin/sh\nid\n")
	forgeRecords(t, h1, "docs",
		&store.Record{Path: "/home/user/Documents/suid", Type: change.TypeFile, Digest: blob, Size: n, Mode: 0o4755 | uint32(unix.S_IFCHR)},
		&store.Record{Path: "/home/user/Documents/sgid", Type: change.TypeDir, Mode: 0o4777 | 0o2000 | 0o1000 | uint32(unix.S_IFCHR)},
	)
	o, err := h2.e.OpenSandbox(h2.ctx, "docs")
	if err != nil {
		t.Fatal(err)
	}
	for p, never := range map[string]os.FileMode{
		"suid": os.ModeSetuid | os.ModeSetgid | os.ModeSticky | os.ModeDevice | os.ModeCharDevice,
		"sgid": os.ModeSetuid | os.ModeDevice | os.ModeCharDevice,
	} {
		fi, err := os.Lstat(filepath.Join(o.Path, "home/user/Documents", p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&never != 0 {
			t.Errorf("%s laid with mode %v", p, fi.Mode())
		}
		if p == "sgid" && (!fi.IsDir() || fi.Mode()&(os.ModeSetgid|os.ModeSticky) != os.ModeSetgid|os.ModeSticky) {
			t.Errorf("the directory laid with mode %v, want its setgid and sticky bits", fi.Mode())
		}
	}
	h2.close()
}

// An image row whose snapshot is one this host never imported: open says
// to import it and starts nothing.
func TestForgedImageNotImported(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		return tx.PutImage(&store.Image{Name: "other", Snapshot: "img/other", Created: time.Now()})
	})
	forgeSandbox(t, h1, "docs", func(sb *store.Sandbox) { sb.Image = "other" })
	_, err := h2.e.OpenSandbox(h2.ctx, "docs")
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "not imported on this host") {
		t.Fatalf("open of a sandbox on an image not imported here: %v", err)
	}
	if ms := mustMounts(t, h2.e.root); len(ms) != 0 {
		t.Errorf("mounts left: %v", ms)
	}
}

// A session row naming the victim for a sandbox it never opened: the
// victim's close fails with an error (or fences), never reads or removes
// anything of another sandbox, and does not hang.
func TestForgedSessionClaimsHost(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		sb, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		sb.State, sb.Session = store.StateOpen, sb.Session+1
		sb.Path, sb.Snapshot = h2.e.MountPath("docs"), sessionKey("docs", sb.Session)
		if err := tx.PutSession(&store.Session{Sandbox: "docs", N: sb.Session, State: store.StateOpen, Host: "h2", Token: 999}); err != nil {
			return err
		}
		return tx.PutSandbox(sb)
	})
	var err error
	withTimeout(t, time.Minute, "close", func(ctx context.Context) { _, err = h2.e.CloseSandbox(ctx, "docs", CloseOptions{}) })
	t.Logf("close of a forged session: %v", err)
	if err == nil {
		t.Errorf("close of a session this host never opened succeeded")
	}
}

// A broken audit chain (an entry's bytes changed by SQL) is reported by
// audit verify on the victim; commands go on.
func TestForgedAuditChain(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	conn := sqlConn(t, h1)
	tag, err := conn.Exec(t.Context(), `UPDATE kv SET v = overlay(v placing 'X'::bytea from position('docs'::bytea in v) for 1) WHERE k = (SELECT k FROM kv WHERE k >= 'a:'::bytea AND k < 'a;'::bytea AND position('docs'::bytea in v) > 0 ORDER BY k LIMIT 1)`)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("break the chain: %v %v", tag, err)
	}
	var verr error
	withTimeout(t, time.Minute, "audit verify", func(ctx context.Context) {
		var p *store.AuditProblem
		p, verr = h2.e.store.VerifyAudit(ctx)
		if verr == nil && p != nil {
			verr = errors.New(p.Message)
		}
	})
	if verr == nil {
		t.Errorf("audit verify passed over a changed entry")
	}
	t.Logf("audit verify: %v", verr)
}

// openAndLayer opens sandbox name on h with a file in Documents, closes
// it, and opens it again: h then has the sandbox's layer of generation 1
// and an open root; it returns the root.
func openAndLayer(t *testing.T, h *fixture, name, file, content string) string {
	t.Helper()
	o, err := h.e.OpenSandbox(h.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	write(t, o.Path, "/home/user/Documents/"+file, content, 0o644)
	if _, err := h.e.CloseSandbox(h.ctx, name, CloseOptions{}); err != nil {
		t.Fatal(err)
	}
	if o, err = h.e.OpenSandbox(h.ctx, name); err != nil {
		t.Fatal(err)
	}
	return o.Path
}

// secretOnVictim makes sandbox "secret" (exception on Documents) and has
// the victim h2 open it, persist secret.txt and open it again: h2 holds
// the layer sbx/secret/gen/1 and secret's open root, which it returns.
func secretOnVictim(t *testing.T, h1, h2 *fixture) string {
	t.Helper()
	if err := h1.e.CreateSandbox("secret", "base"); err != nil {
		t.Fatal(err)
	}
	x := &exceptions.Exception{Sandbox: "secret", Patterns: []string{"/home/user/Documents/**"}, Reason: "test", Forced: true}
	if _, err := h1.e.AddException(h1.ctx, x); err != nil {
		t.Fatal(err)
	}
	return openAndLayer(t, h2, "secret", "secret.txt", "the victim's secret\n")
}

// Was a hole: a sandbox open on the victim whose row the attacker rewrites so
// that its Path names a host directory: the victim's next `open` of it
// (cd "$(spillway open docs)" to get back to it) creates, chmods 0700
// and mounts the sandbox's root over that directory (reopen trusts
// sb.Path). Should fail, leaving the host directory alone.
func TestForgedOpenMountsAtForgedPath(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	if _, err := h2.e.OpenSandbox(h2.ctx, "docs"); err != nil {
		t.Fatal(err)
	}
	forgeSandbox(t, h1, "docs", func(sb *store.Sandbox) { sb.Path = canaryDir })
	// The victim's root is unmounted behind its back (a reboot, say):
	// open mounts it again, where the row says.
	if err := snapshot.Unmount(h2.e.MountPath("docs")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snapshot.Unmount(canaryDir) })
	o, err := h2.e.OpenSandbox(h2.ctx, "docs")
	t.Logf("open again: %v %v", o, err)
	assertCanaryDir(t, canaryDir)
	if err == nil && o.Path != h2.e.MountPath("docs") {
		t.Errorf("open returned %s as the root of docs, outside %s", o.Path, h2.e.mntDir())
	}
}

// Was a hole: the same forged Path on a sandbox open on the victim makes the
// victim's `close` unmount whatever is mounted there (recursively:
// mount.UnmountRecursive), e.g. a host filesystem.
func TestForgedCloseUnmountsForgedPath(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	hostMount := hostTmpfs(t)
	os.WriteFile(filepath.Join(hostMount, "data"), []byte("host fs\n"), 0o644)
	if _, err := h2.e.OpenSandbox(h2.ctx, "docs"); err != nil {
		t.Fatal(err)
	}
	forgeSandbox(t, h1, "docs", func(sb *store.Sandbox) { sb.Path = hostMount })
	var err error
	withTimeout(t, time.Minute, "close", func(ctx context.Context) { _, err = h2.e.CloseSandbox(ctx, "docs", CloseOptions{}) })
	t.Logf("close: %v", err)
	if m, _ := snapshot.IsMounted(hostMount); !m {
		t.Errorf("the victim's close unmounted the host filesystem at %s, which a forged row named", hostMount)
	}
	assertCanaryDir(t, canaryDir)
}

// Was a hole: the victim's layer-cache entry (m:layer-cache/h2:docs), a row
// any host can write, names another sandbox's layer of the same
// generation: the victim's open of docs lays secret's persisted state
// (layerTop never checks the key is one of docs' layers).
func TestForgedLayerCacheNamesAnotherSandbox(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	secretOnVictim(t, h1, h2)
	if _, err := h2.e.CloseSandbox(h2.ctx, "secret", CloseOptions{}); err != nil {
		t.Fatal(err)
	}
	if !h2.e.exists(h2.ctx, layerKey("secret", 1)) {
		t.Fatal("the victim has no layer of secret")
	}
	blob, n := putBlob(t, h1, "docs\n")
	forgeRecords(t, h1, "docs", &store.Record{Path: "/home/user/Documents/docs.txt", Type: change.TypeFile, Digest: blob, Size: n})
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		sb, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		return tx.PutMeta("layer-cache/h2:docs", layerKey("secret", 1)+" "+
			strconvItoa(incarnation(sb))+" "+strconvItoa(time.Now().UnixNano()))
	})
	o, err := h2.e.OpenSandbox(h2.ctx, "docs")
	if err != nil {
		t.Logf("open: %v", err)
		return
	}
	defer h2.close()
	if _, err := os.Stat(filepath.Join(o.Path, "home/user/Documents/secret.txt")); err == nil {
		t.Errorf("docs opened on the victim over secret's layer: secret.txt is in docs' root")
	}
	if _, err := os.Stat(filepath.Join(o.Path, "home/user/Documents/docs.txt")); err != nil {
		t.Errorf("docs' own state is not in its root: %v", err)
	}
}

// Was a hole: an image row whose snapshot key names another sandbox's layer on
// the victim (or any snapshot of its snapshotter): the victim's open of a
// sandbox on that image lays the other sandbox's persisted state (open
// trusts img.Snapshot as the parent).
func TestForgedImageSnapshotNamesAnotherLayer(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	secretOnVictim(t, h1, h2)
	if _, err := h2.e.CloseSandbox(h2.ctx, "secret", CloseOptions{}); err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		if err := tx.PutImage(&store.Image{Name: "evil", Snapshot: layerKey("secret", 1), Created: time.Now()}); err != nil {
			return err
		}
		sb, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		sb.Image = "evil"
		return tx.PutSandbox(sb)
	})
	o, err := h2.e.OpenSandbox(h2.ctx, "docs")
	if err != nil {
		t.Logf("open: %v", err)
		return
	}
	defer h2.close()
	if _, err := os.Stat(filepath.Join(o.Path, "home/user/Documents/secret.txt")); err == nil {
		t.Errorf("docs opened on the victim over secret's layer (image row evil names it): secret.txt is in docs' root")
	}
}

// Was a hole: a sandbox row open on the victim whose Snapshot and Path name
// another sandbox's open root on the victim: the victim's close of docs
// unmounts secret's root, reads its unsaved changes into docs' persisted
// state (in the shared ledger and blobs, where the attacker reads them)
// and removes secret's root.
func TestForgedCloseReadsAnotherSandboxRoot(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	h1.except(func(x *exceptions.Exception) { x.Forced = true }, "/home/user/Documents/**")
	secretRoot := secretOnVictim(t, h1, h2)
	write(t, secretRoot, "/home/user/Documents/unsaved.txt", "the victim's unsaved work\n", 0o644)
	if _, err := h2.e.OpenSandbox(h2.ctx, "docs"); err != nil {
		t.Fatal(err)
	}
	var secret *store.Sandbox
	h1.e.store.View(func(tx *store.Tx) (err error) { secret, err = tx.GetSandbox("secret"); return })
	forgeSandbox(t, h1, "docs", func(sb *store.Sandbox) { sb.Path, sb.Snapshot, sb.Layer = secret.Path, secret.Snapshot, secret.Layer })
	var err error
	withTimeout(t, time.Minute, "close", func(ctx context.Context) { _, err = h2.e.CloseSandbox(ctx, "docs", CloseOptions{}) })
	t.Logf("close of docs: %v", err)
	var leaked []string
	h1.e.store.View(func(tx *store.Tx) error {
		return tx.ForEachRecord(h1.ctx, "docs", func(r *store.Record) error { leaked = append(leaked, r.Path); return nil })
	})
	if len(leaked) > 0 {
		t.Errorf("secret's unsaved files became docs' records in the shared ledger: %q", leaked)
	}
	if !h2.e.exists(h2.ctx, secret.Snapshot) {
		t.Errorf("the victim's close of docs removed secret's open root %s", secret.Snapshot)
	}
	if b, err := os.ReadFile(filepath.Join(secretRoot, "home/user/Documents/unsaved.txt")); err != nil {
		t.Errorf("secret's unsaved work is gone from its root: %q %v", b, err)
	}
}

// Was a hole: a sandbox row whose name climbs out of mnt/ ("../../…"): a
// command on it (the name as `spillway ls` shows it) takes no lock
// (lockSandbox skips invalid names) and open mounts its root at
// MountPath(name), outside the state directory.
func TestForgedSandboxNameClimbs(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	name, err := filepath.Rel(h2.e.mntDir(), canaryDir)
	if err != nil || !strings.HasPrefix(name, "..") {
		t.Fatalf("rel: %q %v", name, err)
	}
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		return tx.PutSandbox(&store.Sandbox{Name: name, Image: "base", Created: time.Now(), State: store.StateClosed})
	})
	var names []string
	h2.e.store.View(func(tx *store.Tx) error {
		sbs, err := tx.ListSandboxes()
		for _, sb := range sbs {
			names = append(names, sb.Name)
		}
		return err
	})
	t.Logf("the victim lists %q", names)
	t.Cleanup(func() { snapshot.Unmount(canaryDir) })
	o, err := h2.e.OpenSandbox(h2.ctx, name)
	t.Logf("open %s: %v %v", name, o, err)
	assertCanaryDir(t, canaryDir)
	if err == nil {
		t.Errorf("a sandbox with the invalid name %q opened", name)
	}
}

func strconvItoa(n int64) string { return strconv.FormatInt(n, 10) }

// An image row whose snapshot key names a sandbox's open root on the
// victim: the victim's import of that image is refused as a bad row, and
// touches no snapshot but its own (a failed import removed the snapshot
// the row named, not the one it had built; the key then existed, so the
// import stopped earlier, but a forged key could come to exist meanwhile).
func TestForgedImageRowImport(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	o, err := h2.e.OpenSandbox(h2.ctx, "docs")
	if err != nil {
		t.Fatal(err)
	}
	defer h2.close()
	write(t, o.Path, "/home/user/Documents/unsaved.txt", "work in progress\n", 0o644)
	var session uint64
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		sb, err := tx.GetSandbox("docs")
		session = sb.Session
		if err != nil {
			return err
		}
		return tx.PutImage(&store.Image{Name: "evil", Snapshot: sessionKey("docs", sb.Session), Files: 1, Bytes: 1, Digest: "sha256:00", Created: time.Now()})
	})
	other := t.TempDir()
	write(t, other, "/etc/hostname", "other\n", 0o644)
	if _, err := h2.e.ImportImage(h2.ctx, "evil", snapshot.Source{Dir: other}); !errdefs.IsDataLoss(err) || !strings.Contains(err.Error(), `image row "evil" names snapshot`) {
		t.Errorf("import of an image whose row names docs' root: %v, want it refused as a row spillway never writes", err)
	}
	if ok, err := h2.e.snap.Exists(h2.ctx, sessionKey("docs", session)); err != nil || !ok {
		t.Fatalf("docs' open root (snapshot %s) is gone after the import: %v", sessionKey("docs", session), err)
	}
	if b, err := os.ReadFile(filepath.Join(o.Path, "home/user/Documents/unsaved.txt")); err != nil || string(b) != "work in progress\n" {
		t.Errorf("docs' unsaved file after the import: %q %v", b, err)
	}
}

// ---- Round two: commands the first round did not cover, run on the
// victim h2 after rows forged from h1. Tests whose comment says "was a
// hole" failed before the fixes that followed (the open-session journal,
// persist/open_journal.go; sizes checked; native directory labels); the
// others fail if the protection they name goes.

// unsavedKept says whether the file rel (content want) of session n of
// sandbox is still on h: in the session's root (its snapshot's upper
// directory, mounted or not) or in its recovery area (a fence or close
// kept it there).
func unsavedKept(t *testing.T, h *fixture, sandbox string, n uint64, rel, want string) bool {
	t.Helper()
	if mounts, err := h.e.snap.Mounts(h.ctx, sessionKey(sandbox, n)); err == nil {
		if upper, _, ok := snapshot.OverlayDirs(mounts); ok {
			if b, err := os.ReadFile(filepath.Join(upper, rel)); err == nil && string(b) == want {
				return true
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(h.e.sessionDir(sandbox, n), treeDir, rel))
	return err == nil && string(b) == want
}

// noPanic runs fn and turns a panic into a test error naming what.
func noPanic(t *testing.T, what string, fn func() error) (err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("%s panicked on the victim: %v", what, p)
			err = errors.New("panic")
		}
	}()
	return fn()
}

// forgeOpenRootAway opens docs on h2 with an unsaved file, then has h1
// rewrite the ledger so that docs no longer looks open on h2, the lease
// left as it is (still h2's): how is "state-closed" (the sandbox row
// says closed) or "session-host" (the session row names h1). It returns
// h2's session number.
func forgeOpenRootAway(t *testing.T, h1, h2 *fixture, how string) uint64 {
	t.Helper()
	n := openWithUnsaved(t, h2)
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		sb, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		switch how {
		case "state-closed":
			sb.State = store.StateClosed
			return tx.PutSandbox(sb)
		case "session-host":
			ses, err := tx.GetSession("docs", sb.Session)
			if err != nil {
				return err
			}
			ses.Host = "h1"
			return tx.PutSession(ses)
		}
		return errors.New("how " + how)
	})
	var l *store.Lease
	h2.e.store.View(func(tx *store.Tx) (err error) { l, err = tx.GetLease("docs"); return })
	if l == nil || l.Host != "h2" {
		t.Fatalf("the lease of docs: %+v, want h2's", l)
	}
	return n
}

// Was a hole: gc on the victim removes the root of a sandbox open on it, whose
// lease it still holds, when a forged row says the sandbox is closed or
// its session another host's: loadExpected (persist/check.go) accounts
// for an open root only by the sandbox and session rows, and gcSnapshots
// (persist/gc.go) removes every snapshot it does not account for. The
// unsaved work is gone, not even in the recovery area.
func TestForged2GCRemovesOpenRoot(t *testing.T) {
	for _, how := range []string{"state-closed", "session-host"} {
		t.Run(how, func(t *testing.T) {
			h1, h2, canaryDir := forgedFleet(t)
			n := forgeOpenRootAway(t, h1, h2, how)
			runGC(t, h2)
			if !unsavedKept(t, h2, "docs", n, "home/user/Documents/unsaved.txt", "unsaved work\n") {
				t.Errorf("gc on h2 removed the open root of docs (session %d, lease still h2's) after a forged %s row: its unsaved work is gone", n, how)
			}
			assertCanaryDir(t, canaryDir)
		})
	}
}

// Was a hole: the victim's `open` of a sandbox open on it (cd "$(spillway open
// docs)" to get back to it), whose row the attacker marked closed with
// the lease left h2's: OpenSandbox takes the row as closed and runs
// cleanupSandbox (persist/layer_chain.go), which unmounts the root and
// removes every session snapshot of the sandbox: the unsaved work is
// gone, not in the recovery area.
func TestForged2OpenRemovesOpenRootMarkedClosed(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	n := forgeOpenRootAway(t, h1, h2, "state-closed")
	var err error
	withTimeout(t, 2*time.Minute, "open", func(ctx context.Context) { _, err = h2.e.OpenSandbox(ctx, "docs") })
	t.Logf("open again: %v", err)
	if !unsavedKept(t, h2, "docs", n, "home/user/Documents/unsaved.txt", "unsaved work\n") {
		t.Errorf("the victim's open of docs removed its own open root (session %d, lease h2's) after a forged closed row: its unsaved work is gone", n)
	}
	assertCanaryDir(t, canaryDir)
}

// Was a hole: a record whose Size is negative (a zigzag varint in the v2
// encoding: any host can store one through StageRecords or SQL) panics
// the victim wherever its content is read: blobs' verified.Read
// (persist/content.go) slices p[:v.size+1-v.n], a negative bound. review
// show (diffRecords: a negative size is not "> MaxDiffSize"), persisted
// cat (OpenRecord) and open (laying the state) all read it.
func TestForged2NegativeRecordSize(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	blob, _ := putBlob(t, h1, "forged content\n")
	forgeRecords(t, h1, "docs", &store.Record{Path: "/home/user/Documents/neg.txt", Type: change.TypeFile, Digest: blob, Size: -5})
	var r *store.Record
	h2.e.store.View(func(tx *store.Tx) error {
		return tx.ForEachRecord(h2.ctx, "docs", func(x *store.Record) error { r = x; return nil })
	})
	if r == nil || r.Size != -5 {
		t.Fatalf("the forged record: %+v", r)
	}
	err := noPanic(t, "review show", func() error { _, err := h2.e.ReviewShow(r.ID); return err })
	t.Logf("review show: %v", err)
	err = noPanic(t, "persisted cat", func() error {
		rc, err := h2.e.OpenRecord(r)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.ReadAll(rc)
		return err
	})
	t.Logf("cat: %v", err)
	err = noPanic(t, "open", func() error { _, err := h2.e.OpenSandbox(h2.ctx, "docs"); return err })
	t.Logf("open: %v", err)
	// The panic skipped the layer build's clean-up: its mount under tmp/.
	for _, m := range mustMounts(t, h2.e.root) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", m, err)
		}
	}
}

// forgedNativeFleet is forgedFleet with the victim h2 on the native
// snapshotter (h1 on overlay): hosts may mix snapshotters.
func forgedNativeFleet(t *testing.T) (h1, h2 *fixture) {
	t.Helper()
	fs, url := fleetHosts(t, snapshot.KindOverlay, snapshot.KindNative)
	forgedURL[fs[0]] = url
	t.Cleanup(func() { delete(forgedURL, fs[0]) })
	return fs[0], fs[1]
}

// Was a hole: on a native host the sandbox row's BaseDir (and the image's
// m:imagedir/HOST:IMAGE, m:layerdir/HOST:KEY it is copied from at open)
// is the directory close compares the root with (walkChanges,
// persist/close_classify.go → snapshot.TreeDir). TreeDir checks the hint
// is some snapshot directory of this snapshotter, not the parent's own,
// so a row naming another sandbox's open root makes the victim's close
// of docs diff docs' root against secret's: secret's unsaved files show
// as deletions under docs' exception, and their names become docs'
// records in the shared ledger, where the attacker reads them.
func TestForged2NativeBaseDirNamesAnotherRoot(t *testing.T) {
	h1, h2 := forgedNativeFleet(t)
	h1.except(func(x *exceptions.Exception) { x.Forced = true }, "/home/user/Documents/**")
	secretRoot := secretOnVictim(t, h1, h2)
	write(t, secretRoot, "/home/user/Documents/unsaved-secret-name.txt", "the victim's unsaved work\n", 0o644)
	var secret *store.Sandbox
	h1.e.store.View(func(tx *store.Tx) (err error) { secret, err = tx.GetSandbox("secret"); return })
	mounts, err := h2.e.snap.Mounts(h2.ctx, secret.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	secretDir, ok := snapshot.BindSource(mounts)
	if !ok {
		t.Fatalf("secret's root mounts: %v", mounts)
	}
	if _, err := h2.e.OpenSandbox(h2.ctx, "docs"); err != nil {
		t.Fatal(err)
	}
	forgeSandbox(t, h1, "docs", func(sb *store.Sandbox) { sb.BaseDir = secretDir })
	var sum *CloseSummary
	withTimeout(t, 2*time.Minute, "close", func(ctx context.Context) { sum, err = h2.e.CloseSandbox(ctx, "docs", CloseOptions{}) })
	if sum != nil {
		t.Logf("close of docs: persisted %d, refused %d: %v", len(sum.Persisted), len(sum.Refused), err)
	} else {
		t.Logf("close of docs: %v", err)
	}
	var leaked []string
	h1.e.store.View(func(tx *store.Tx) error {
		return tx.ForEachRecord(h1.ctx, "docs", func(r *store.Record) error {
			if strings.Contains(r.Path, "secret") {
				leaked = append(leaked, string(r.Kind)+" "+r.Path)
			}
			return nil
		})
	})
	if len(leaked) > 0 {
		t.Errorf("the victim's close of docs compared its root with secret's open root (a forged BaseDir): docs' records in the shared ledger name secret's files: %q", leaked)
	}
	if b, err := os.ReadFile(filepath.Join(secretRoot, "home/user/Documents/unsaved-secret-name.txt")); err != nil || len(b) == 0 {
		t.Errorf("secret's unsaved work: %q %v", b, err)
	}
}

// Was a hole: `persisted export` of a state holding a record with a negative
// Size crashes the victim's process: prefetch (persist/export_prefetch.go)
// takes it for a small file (r.Size <= smallFile), and its worker
// goroutine's readRecord panics (make([]byte, r.Size+1), or the verified
// reader's negative slice bound), which no caller can recover. The export
// runs in a child process (the test binary again) that must exit cleanly.
func TestForged2NegativeSizeExport(t *testing.T) {
	if os.Getenv("FORGED2_EXPORT_ROOT") != "" {
		forged2ExportChild(t)
		return
	}
	h1, h2, _ := forgedFleet(t)
	blob, _ := putBlob(t, h1, "forged content\n")
	forgeRecords(t, h1, "docs", &store.Record{Path: "/home/user/Documents/neg.txt", Type: change.TypeFile, Digest: blob, Size: -5})
	root, blobs := h2.e.root, h2.e.blobs.dir
	if err := h2.e.Close(); err != nil { // the child takes the root's lock
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "export")
	logf := filepath.Join(t.TempDir(), "child.log")
	lf, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	env := append(os.Environ(), "FORGED2_EXPORT_ROOT="+root, "FORGED2_EXPORT_STORE="+forgedURL[h1],
		"FORGED2_EXPORT_BLOBS=dir://"+blobs, "FORGED2_EXPORT_DEST="+dest)
	p, err := os.StartProcess(os.Args[0], []string{os.Args[0], "-test.run", "^TestForged2NegativeSizeExport$", "-test.count=1", "-test.v"},
		&os.ProcAttr{Env: env, Files: []*os.File{nil, lf, lf}})
	if err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(2*time.Minute, func() { p.Kill() })
	st, err := p.Wait()
	timer.Stop()
	out, _ := os.ReadFile(logf)
	t.Logf("the victim's export (child process): %v %v\n%s", st, err, out)
	if err != nil || !st.Success() || bytes.Contains(out, []byte("panic:")) {
		t.Errorf("persisted export on the victim of a state with a negative-size record crashed the process (%v)", st)
	}
}

// forged2ExportChild is the victim's `persisted export docs DEST`.
func forged2ExportChild(t *testing.T) {
	ctx := context.Background()
	e, err := OpenEnv(ctx, Options{Root: os.Getenv("FORGED2_EXPORT_ROOT"), LockTimeout: 5 * time.Second, HostID: "h2",
		Store: os.Getenv("FORGED2_EXPORT_STORE"), Blobs: os.Getenv("FORGED2_EXPORT_BLOBS")})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	dest := os.Getenv("FORGED2_EXPORT_DEST")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	set, err := e.Export(ctx, "docs", "/", At{})
	if err == nil {
		_, err = e.ExportDir(ctx, set, dest)
	}
	t.Logf("export: %v", err)
}

// A session row whose token is not the lease's (forged while docs is open
// on the victim, the lease still h2's): the victim's close is fenced, the
// ledger gets nothing of the session, and the unsaved work is kept in
// the victim's recovery area, not lost. (Fails if close stopped checking
// the session's token against the lease: the close would commit.)
func TestForged2SessionTokenFences(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	n := openWithUnsaved(t, h2)
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		sb, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		ses, err := tx.GetSession("docs", sb.Session)
		if err != nil {
			return err
		}
		ses.Token += 1000
		return tx.PutSession(ses)
	})
	var err error
	withTimeout(t, 2*time.Minute, "close", func(ctx context.Context) { _, err = h2.e.CloseSandbox(ctx, "docs", CloseOptions{}) })
	t.Logf("close: %v", err)
	var fe *store.FencedError
	if !errors.As(err, &fe) {
		t.Errorf("close of a session whose token is not the lease's: %v, want fenced", err)
	}
	if !unsavedKept(t, h2, "docs", n, "home/user/Documents/unsaved.txt", "unsaved work\n") {
		t.Errorf("the fenced session's unsaved work is neither in its root nor in the recovery area")
	}
	assertCanaryDir(t, canaryDir)
}

// Checkpoint entries (written through the store API, as any host can)
// claiming heads that are malformed, of chains that do not exist, or
// not in their chain: audit verify on the victim reports a problem,
// never panics or hangs. (Fails if verify stopped checking a checkpoint's
// claims against the chains: the wrong head would pass.)
func TestForged2AuditCheckpointClaims(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		_, err := tx.Append(time.Now(), store.CheckpointType, "", map[string]string{
			"chains":     "4",
			"head:docs":  "1:" + strings.Repeat("ab", 32),
			"head:../x":  "18446744073709551615:" + strings.Repeat("00", 32),
			"head:":      "nonsense",
			"head:docs2": ":" + strings.Repeat("zz", 32),
		})
		return err
	})
	var (
		p   *store.AuditProblem
		err error
	)
	withTimeout(t, time.Minute, "audit verify", func(ctx context.Context) {
		err = noPanic(t, "audit verify", func() error { p, err = h2.e.store.VerifyAudit(ctx); return err })
	})
	t.Logf("audit verify: %+v %v", p, err)
	if p == nil && err == nil {
		t.Errorf("audit verify passed over a checkpoint claiming a head that is not docs' chain's")
	}
}

// Exceptions forged with patterns spillway never accepts (empty, relative,
// climbing, unbalanced, NUL-free but absurd): the victim's close of docs
// either persists under the valid rule or fails, never panics, and writes
// nothing outside its own state. (The store API takes any patterns.)
func TestForged2ExceptionPatterns(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	o, err := h2.e.OpenSandbox(h2.ctx, "docs")
	if err != nil {
		t.Fatal(err)
	}
	write(t, o.Path, "/home/user/Documents/a.txt", "a\n", 0o644)
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		for i, pats := range [][]string{{""}, {"relative/**"}, {"/home/../../" + strings.TrimPrefix(canaryDir, "/") + "/**"}, {"/home/[**"}, {strings.Repeat("/**", 5000)}, {}} {
			x := &exceptions.Exception{ID: "ex" + strconv.Itoa(900+i), Sandbox: "docs", Patterns: pats, Reason: "forged", Created: time.Now()}
			if err := tx.PutException(x); err != nil {
				return err
			}
		}
		return nil
	})
	var sum *CloseSummary
	withTimeout(t, 2*time.Minute, "close", func(ctx context.Context) {
		err = noPanic(t, "close", func() error { sum, err = h2.e.CloseSandbox(ctx, "docs", CloseOptions{}); return err })
	})
	if sum != nil {
		t.Logf("close: persisted %d: %v", len(sum.Persisted), err)
	} else {
		t.Logf("close: %v", err)
	}
	assertCanaryDir(t, canaryDir)
}

// A forged layer-cache entry of the victim for a sandbox open on it
// (secret), of another incarnation, makes its chain the first gc evicts:
// the chain under the open root stays, and so does the root. (Fails if
// evictLayerCaches stopped keeping chains under an open root, inUse.)
func TestForged2LayerCacheEvictsOpenChain(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	secretRoot := secretOnVictim(t, h1, h2)
	write(t, secretRoot, "/home/user/Documents/unsaved.txt", "unsaved work\n", 0o644)
	var secret *store.Sandbox
	h1.e.store.View(func(tx *store.Tx) (err error) { secret, err = tx.GetSandbox("secret"); return })
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		return tx.PutMeta("layer-cache/h2:secret", layerKey("secret", 1)+" 1 1")
	})
	t.Setenv("SPILLWAY_LAYER_CACHE", "1")
	runGC(t, h2)
	for _, k := range []string{secret.Snapshot, layerKey("secret", 1)} {
		if !h2.e.exists(h2.ctx, k) {
			t.Errorf("gc removed %s under secret's open root after a forged cache entry", k)
		}
	}
	if b, err := os.ReadFile(filepath.Join(secretRoot, "home/user/Documents/unsaved.txt")); err != nil || string(b) != "unsaved work\n" {
		t.Errorf("secret's unsaved work: %q %v", b, err)
	}
	assertCanaryDir(t, canaryDir)
}

// rm --force of a sandbox open on the victim whose row's Path names a host
// filesystem: the victim unmounts its own mount point only, never the
// path the row names. (Fails if RemoveSandbox unmounted sb.Path.)
func TestForged2RmForceForgedPath(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	hostMount := hostTmpfs(t)
	if _, err := h2.e.OpenSandbox(h2.ctx, "docs"); err != nil {
		t.Fatal(err)
	}
	forgeSandbox(t, h1, "docs", func(sb *store.Sandbox) { sb.Path = hostMount })
	var err error
	withTimeout(t, time.Minute, "diff", func(ctx context.Context) {
		err = h2.e.Diff(ctx, "docs", func(DiffEntry) error { return nil })
	})
	t.Logf("diff: %v", err)
	withTimeout(t, time.Minute, "rm --force", func(ctx context.Context) { err = h2.e.RemoveSandbox(ctx, "docs", true, nil) })
	t.Logf("rm --force: %v", err)
	if m, _ := snapshot.IsMounted(hostMount); !m {
		t.Errorf("the victim's rm --force unmounted the host filesystem at %s, which a forged row named", hostMount)
	}
	if m, _ := snapshot.IsMounted(h2.e.MountPath("docs")); m {
		t.Errorf("rm --force left docs' own root mounted")
	}
	assertCanaryDir(t, canaryDir)
}

// hostTmpfs mounts a small tmpfs standing for a filesystem of the host,
// outside every root, and returns where.
func hostTmpfs(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "host-mount")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}
