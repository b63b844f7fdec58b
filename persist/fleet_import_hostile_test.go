package persist

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// hostileImportSource makes a single-host root with one closed sandbox
// whose two persisted files left two blobs; it returns the root and the
// blobs' digests.
func hostileImportSource(t *testing.T) (string, []string) {
	t.Helper()
	f := newFixture(t, snapshot.KindOverlay)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, docs+"/a.txt", "first document, a little longer than the second", 0o644)
	write(t, root, docs+"/b.txt", "second document", 0o644)
	sum := f.close()
	var blobs []string
	for _, p := range sum.Persisted {
		blobs = append(blobs, p.Digest)
	}
	if len(blobs) != 2 {
		t.Fatalf("source blobs %q", blobs)
	}
	if err := f.e.Close(); err != nil {
		t.Fatal(err)
	}
	f.e = nil
	return filepath.Join(f.dir, "state"), blobs
}

// fleetEnv is a host of a fleet: a ledger on PostgreSQL, a shared blob
// directory.
func fleetEnv(t *testing.T) *Env {
	t.Helper()
	base := t.TempDir()
	e, err := OpenEnv(context.Background(), Options{Root: filepath.Join(base, "fleet"), HostID: "fleet1", Store: pgtest.URL(t),
		Blobs: "dir://" + filepath.Join(base, "shared-blobs"), LedgerOnly: true, LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func blobFile(dir, digest string) string {
	return filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// assertNothingImported checks the ledger has no sandbox and the shared
// blob directory no blob and no temporary file.
func assertNothingImported(t *testing.T, e *Env) {
	t.Helper()
	var sbs []*store.Sandbox
	if err := e.store.View(func(tx *store.Tx) error {
		var err error
		sbs, err = tx.ListSandboxes()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(sbs) != 0 {
		t.Errorf("the ledger has %d sandboxes", len(sbs))
	}
	for _, d := range []string{"sha256", "tmp"} {
		ents, err := os.ReadDir(filepath.Join(e.blobs.dir, d))
		if err != nil {
			t.Fatal(err)
		}
		for _, ent := range ents {
			t.Errorf("the shared blob directory has %s/%s", d, ent.Name())
		}
	}
	if ents, _ := os.ReadDir(e.tmpDir()); len(ents) != 0 {
		t.Errorf("left in the fleet root's tmp/: %v", ents)
	}
}

// victim is a host file that must come out of every import untouched:
// its first bytes zero (badger takes such a file for an unencrypted log
// and replays it), then a secret.
func victim(t *testing.T) (string, []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "shadow")
	content := append(make([]byte, 64), []byte("root:$6$secret-hash:19000:0:99999:7:::\n")...)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, content
}

func runImport(t *testing.T, e *Env, dir string) (*store.ImportResult, error) {
	t.Helper()
	type result struct {
		r   *store.ImportResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := e.FleetImport(context.Background(), FleetImportOptions{FromRoot: dir})
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		return res.r, res.err
	case <-time.After(60 * time.Second):
		t.Fatalf("fleet import of %s hangs", dir)
		return nil, nil
	}
}

// A prepared source root: every bad input is refused with an error naming
// it, nothing reaches the shared ledger or blob directory, and no host
// file is read, copied or changed.
func TestFleetImportHostileSource(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(t *testing.T, dir, victim string, blobs []string)
		want    string
	}{
		{"store file symlinked to a host file", func(t *testing.T, dir, victim string, blobs []string) {
			// badger replays NNNNN.mem and truncates it where its
			// entries end: through a symlink, the host file.
			must(t, os.Symlink(victim, filepath.Join(dir, "store", "000099.mem")))
		}, "store/000099.mem, a symlink"},
		{"value log symlinked to a host file", func(t *testing.T, dir, victim string, blobs []string) {
			must(t, os.Symlink(victim, filepath.Join(dir, "store", "000077.vlog")))
		}, "store/000077.vlog, a symlink"},
		{"store dir symlinked to another root's", func(t *testing.T, dir, _ string, blobs []string) {
			other := filepath.Join(t.TempDir(), "other-store")
			must(t, os.Rename(filepath.Join(dir, "store"), other))
			must(t, os.Symlink(other, filepath.Join(dir, "store")))
		}, "holds store, a symlink"},
		{"FIFO in the store", func(t *testing.T, dir, _ string, blobs []string) {
			must(t, syscall.Mkfifo(filepath.Join(dir, "store", "000099.mem"), 0o600))
		}, "store/000099.mem, which is not a regular file"},
		{"device in the store", func(t *testing.T, dir, _ string, blobs []string) {
			must(t, syscall.Mknod(filepath.Join(dir, "store", "000098.vlog"), syscall.S_IFCHR|0o600, 1<<8|5)) // /dev/zero
		}, "store/000098.vlog, which is not a regular file"},
		{"hard link in the store", func(t *testing.T, dir, victim string, blobs []string) {
			must(t, os.Link(victim, filepath.Join(dir, "store", "000099.mem")))
		}, "store/000099.mem, a file with 2 links"},
		{"corrupt table", func(t *testing.T, dir, _ string, blobs []string) {
			ssts, _ := filepath.Glob(filepath.Join(dir, "store", "*.sst"))
			if len(ssts) == 0 {
				t.Fatal("no table in the source's ledger")
			}
			// badger panics on this in a goroutine of its own.
			must(t, os.WriteFile(ssts[0], []byte("root:$6$abc:19000:0:99999:7:::\nmore garbage to fill a table footer\n"), 0o644))
		}, "the source's ledger is corrupt: table"},
		{"ledger of a newer spillway", func(t *testing.T, dir, _ string, blobs []string) {
			db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "store")).WithLogger(nil))
			must(t, err)
			must(t, db.Update(func(txn *badger.Txn) error {
				return txn.Set([]byte("schema"), []byte(strconv.Itoa(store.SchemaVersion+1)))
			}))
			must(t, db.Close())
		}, "/store: schema version " + strconv.Itoa(store.SchemaVersion+1) + " is newer than this spillway supports"},
		{"blobs dir symlinked", func(t *testing.T, dir, _ string, blobs []string) {
			other := filepath.Join(t.TempDir(), "other-blobs")
			must(t, os.Rename(filepath.Join(dir, "blobs"), other))
			must(t, os.Symlink(other, filepath.Join(dir, "blobs")))
		}, "blobs is a symlink"},
		{"sha256 dir symlinked", func(t *testing.T, dir, _ string, blobs []string) {
			other := filepath.Join(t.TempDir(), "other-sha256")
			must(t, os.Rename(filepath.Join(dir, "blobs", "sha256"), other))
			must(t, os.Symlink(other, filepath.Join(dir, "blobs", "sha256")))
		}, "blobs/sha256 is a symlink"},
		{"blob symlinked", func(t *testing.T, dir, victim string, blobs []string) {
			p := blobFile(dir, blobs[1])
			must(t, os.Remove(p))
			must(t, os.Symlink(victim, p))
		}, "of the source is a symlink"},
		{"blob hard-linked", func(t *testing.T, dir, _ string, blobs []string) {
			must(t, os.Link(blobFile(dir, blobs[1]), filepath.Join(t.TempDir(), "elsewhere")))
		}, "of the source has 2 links"},
		{"blob FIFO", func(t *testing.T, dir, _ string, blobs []string) {
			p := blobFile(dir, blobs[1])
			must(t, os.Remove(p))
			must(t, syscall.Mkfifo(p, 0o600))
		}, "of the source is not a regular file"},
		{"blob a directory", func(t *testing.T, dir, _ string, blobs []string) {
			p := blobFile(dir, blobs[1])
			must(t, os.Remove(p))
			must(t, os.Mkdir(p, 0o700))
		}, "of the source is not a regular file"},
		{"blob of other content of the same size", func(t *testing.T, dir, _ string, blobs []string) {
			p := blobFile(dir, blobs[1])
			b, err := os.ReadFile(p)
			must(t, err)
			must(t, os.WriteFile(p, bytes.ToUpper(b), 0o600))
		}, "content does not match its digest"},
		{"huge sparse blob", func(t *testing.T, dir, _ string, blobs []string) {
			must(t, os.Truncate(blobFile(dir, blobs[1]), 64<<20))
		}, "of the source is 67108864 bytes, its records say"},
		{"host-id a FIFO", func(t *testing.T, dir, _ string, blobs []string) {
			os.Remove(filepath.Join(dir, hostIDFile))
			must(t, syscall.Mkfifo(filepath.Join(dir, hostIDFile), 0o600))
		}, "host-id is not a small regular file"},
		{"root a symlink", func(t *testing.T, dir, _ string, blobs []string) {
			real := dir + "-real"
			must(t, os.Rename(dir, real))
			must(t, os.Symlink(real, dir))
		}, "passes through a symlink"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, blobs := hostileImportSource(t)
			v, content := victim(t)
			e := fleetEnv(t)
			c.prepare(t, dir, v, blobs)
			_, err := runImport(t, e, dir)
			if b, rerr := os.ReadFile(v); rerr != nil || !bytes.Equal(b, content) {
				t.Errorf("the host file changed: %q %v", b, rerr)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("import: %v, want an error saying %q", err, c.want)
			}
			if strings.Contains(err.Error(), "secret-hash") {
				t.Errorf("the error shows the host file: %v", err)
			}
			assertNothingImported(t, e)
		})
	}
}

// A blob that checks out and one that does not: neither reaches the
// shared blob directory (the first is not left there unreferenced).
func TestFleetImportOneBadBlobCopiesNone(t *testing.T) {
	dir, blobs := hostileImportSource(t)
	e := fleetEnv(t)
	must(t, os.WriteFile(blobFile(dir, blobs[0]), []byte("forged"), 0o600))
	if _, err := runImport(t, e, dir); err == nil || !strings.Contains(err.Error(), "content does not match its digest") {
		t.Fatalf("import: %v", err)
	}
	assertNothingImported(t, e)
}

// A source root inside the fleet's own state directory or blob
// directory is refused.
func TestFleetImportRootInsideTheFleet(t *testing.T) {
	for _, where := range []string{"root", "blobs"} {
		t.Run(where, func(t *testing.T) {
			src, _ := hostileImportSource(t)
			e := fleetEnv(t)
			parent := e.root
			if where == "blobs" {
				parent = filepath.Join(e.blobs.dir, "tmp")
			}
			dir := filepath.Join(parent, "imported")
			if out, err := exec.Command("cp", "-a", src, dir).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
			_, err := runImport(t, e, dir)
			if err == nil || !strings.Contains(err.Error(), "lies inside") {
				t.Fatalf("import: %v", err)
			}
		})
	}
}

// A blob the shared directory has under the right name with other bytes
// (planted by someone who could write there) is replaced by the source's,
// which hash to the name, rather than named by the imported records.
func TestFleetImportReplacesCorruptSharedBlob(t *testing.T) {
	dir, blobs := hostileImportSource(t)
	e := fleetEnv(t)
	d := blobs[1]
	good, err := os.ReadFile(blobFile(dir, d))
	must(t, err)
	p, _ := e.blobs.Path(d)
	must(t, os.WriteFile(p, bytes.ToUpper(good), 0o600))
	if _, err := runImport(t, e, dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range blobs {
		if err := e.blobs.Verify(d); err != nil {
			t.Errorf("after the import: %v", err)
		}
	}
}

// A source ledger written by hand (a local user can write any badger
// store and a matching audit chain) with rows no spillway writes, each
// of which would reach other users of the shared ledger: refused, nothing
// imported.
func TestFleetImportHostileLedgerRows(t *testing.T) {
	cases := []struct {
		name string
		edit func(tx *store.Tx) error
		want string
	}{
		{"image on another sandbox's layer", func(tx *store.Tx) error {
			return tx.PutImage(&store.Image{Name: "evil", Snapshot: "sbx/victim/gen/1", Files: 1, Bytes: 1, Created: time.Now()})
		}, `image evil with snapshot key "sbx/victim/gen/1"`},
		{"image name with a slash", func(tx *store.Tx) error {
			return tx.PutImage(&store.Image{Name: "../evil", Snapshot: "img/../evil", Files: 1, Bytes: 1, Created: time.Now()})
		}, `the source's ledger: store: image row "../evil" names image "../evil", a row spillway never writes`},
		{"sandbox name with a slash", func(tx *store.Tx) error {
			sb, err := tx.GetSandbox("docs")
			if err != nil {
				return err
			}
			sb.Name = "../../docs"
			return tx.PutSandbox(sb)
		}, `the source's ledger: store: sandbox row "../../docs" names sandbox "../../docs", a row spillway never writes`},
		{"exception of a sandbox the source lacks", func(tx *store.Tx) error {
			xs, err := tx.ListExceptions("docs")
			if err != nil || len(xs) == 0 {
				t.Fatalf("source exceptions: %v %v", xs, err)
			}
			x := *xs[0]
			if x.ID, err = tx.NextExceptionID(); err != nil {
				return err
			}
			x.Sandbox = "victim"
			return tx.PutException(&x)
		}, `exception ex2 of sandbox "victim", which the source does not have`},
		{"session host with a slash", func(tx *store.Tx) error {
			ses, err := tx.ListSessions("docs")
			if err != nil || len(ses) == 0 {
				t.Fatalf("sessions: %v %v", ses, err)
			}
			ses[0].Host = "../h"
			return tx.PutSession(ses[0])
		}, `on a host named "../h"`},
		{"open session of a closed sandbox", func(tx *store.Tx) error {
			ses, err := tx.ListSessions("docs")
			if err != nil || len(ses) == 0 {
				t.Fatalf("sessions: %v %v", ses, err)
			}
			ses[0].State, ses[0].Host = store.StateOpen, "fleet1"
			return tx.PutSession(ses[0])
		}, "session 1 of docs open while the sandbox is closed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := hostileImportSource(t)
			s, err := store.Open(filepath.Join(dir, "store"))
			must(t, err)
			must(t, s.Update(c.edit))
			must(t, s.Close())
			e := fleetEnv(t)
			_, err = runImport(t, e, dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("import: %v, want an error saying %q", err, c.want)
			}
			assertNothingImported(t, e)
			var xs []*exceptions.Exception
			var ims []*store.Image
			must(t, e.store.View(func(tx *store.Tx) error {
				var err error
				if xs, err = tx.ListExceptions(""); err != nil {
					return err
				}
				ims, err = tx.ListImages()
				return err
			}))
			if len(xs) != 0 || len(ims) != 0 {
				t.Errorf("the ledger has %d exceptions, %d images", len(xs), len(ims))
			}
		})
	}
}
