package persist

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/internal/testrootfs"
	"github.com/spillway/spillway/snapshot"
)

var (
	rootfsOnce sync.Once
	rootfsDir  string
	rootfsErr  error
)

// busyboxRootfs builds the busybox rootfs once per test binary.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	rootfsOnce.Do(func() {
		rootfsDir, rootfsErr = os.MkdirTemp("", "spillway-rootfs-")
		if rootfsErr == nil {
			rootfsErr = testrootfs.Build(rootfsDir)
		}
	})
	if rootfsErr != nil {
		t.Fatal(rootfsErr)
	}
	return rootfsDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	if rootfsDir != "" {
		os.RemoveAll(rootfsDir)
	}
	os.Exit(code)
}

// fixture is a state directory with a busybox image and one sandbox "docs",
// plus a host canary file whose bytes must never reach the store.
type fixture struct {
	t          *testing.T
	ctx        context.Context
	e          *Env
	dir        string
	canaryPath string
	canary     []byte
}

func newFixture(t *testing.T, kind string) *fixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("persist tests mount overlay filesystems and need root (CI runs them as root)")
	}
	dir := t.TempDir()
	f := &fixture{t: t, ctx: context.Background(), dir: dir}
	f.canary = make([]byte, 64)
	rand.Read(f.canary)
	f.canaryPath = filepath.Join(dir, "host-canary")
	if err := os.WriteFile(f.canaryPath, f.canary, 0o644); err != nil {
		t.Fatal(err)
	}
	f.openEnv(kind)
	t.Cleanup(func() {
		if f.e != nil {
			for _, m := range mustMounts(t, f.e.root) {
				snapshot.Unmount(m)
			}
			f.e.Close()
		}
	})
	if _, err := f.e.ImportImage(f.ctx, "base", snapshot.Source{Dir: busyboxRootfs(t)}); err != nil {
		t.Fatal(err)
	}
	if err := f.e.CreateSandbox("docs", "base"); err != nil {
		t.Fatal(err)
	}
	return f
}

func mustMounts(t *testing.T, dir string) []string {
	ms, err := snapshot.MountsUnder(dir)
	if err != nil {
		t.Error(err)
	}
	return ms
}

func (f *fixture) openEnv(kind string) {
	f.t.Helper()
	e, err := OpenEnv(f.ctx, Options{Root: filepath.Join(f.dir, "state"), Snapshotter: kind, LockTimeout: 5 * time.Second})
	if err != nil {
		f.t.Fatal(err)
	}
	f.e = e
}

// reopenEnv closes and reopens the state directory, as a new command would.
func (f *fixture) reopenEnv() {
	f.t.Helper()
	if err := f.e.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.openEnv("")
}

// except adds an exception to docs; mod may change it first.
func (f *fixture) except(mod func(x *exceptions.Exception), patterns ...string) string {
	f.t.Helper()
	x := &exceptions.Exception{Sandbox: "docs", Patterns: patterns, Reason: "test"}
	if mod != nil {
		mod(x)
	}
	if _, err := f.e.AddException(context.Background(), x); err != nil {
		f.t.Fatal(err)
	}
	return x.ID
}

func (f *fixture) open() string {
	f.t.Helper()
	o, err := f.e.OpenSandbox(f.ctx, "docs")
	if err != nil {
		f.t.Fatal(err)
	}
	return o.Path
}

func (f *fixture) close() *CloseSummary {
	f.t.Helper()
	sum, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return sum
}

// write creates a file (and its parents) inside an open root.
func write(t *testing.T, root, p, content string, mode os.FileMode) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(full, mode); err != nil {
		t.Fatal(err)
	}
}

func refusal(sum *CloseSummary, p string) string {
	for _, r := range sum.Refused {
		if r.Path == p {
			return r.Reason
		}
	}
	return ""
}

func persisted(sum *CloseSummary, p string) bool {
	for _, r := range sum.Persisted {
		if r.Path == p {
			return true
		}
	}
	return false
}

// assertNoCanary fails if the canary's bytes are in the blob store, the
// badger directory, or under dir (an open root), never following links.
func (f *fixture) assertNoCanary(roots ...string) {
	f.t.Helper()
	for _, d := range append([]string{filepath.Join(f.e.root, "blobs"), filepath.Join(f.e.root, "store")}, roots...) {
		filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
			if err != nil || !de.Type().IsRegular() {
				return nil
			}
			if fileContains(p, f.canary) {
				f.t.Errorf("host canary bytes found in %s", p)
			}
			return nil
		})
	}
}

// treeListing describes a tree (path, type, mode, owner, size, content hash,
// link target) without following links, for byte-for-byte comparisons.
func treeListing(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := statOf(fi)
		line := fmt.Sprintf("%s %v %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			fh, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			io.Copy(h, fh)
			fh.Close()
			line += fmt.Sprintf(" %d %x", fi.Size(), h.Sum(nil))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func diffListings(a, b []string) string {
	am := map[string]bool{}
	for _, x := range a {
		am[x] = true
	}
	bm := map[string]bool{}
	for _, x := range b {
		bm[x] = true
	}
	var d []string
	for _, x := range a {
		if !bm[x] {
			d = append(d, "- "+x)
		}
	}
	for _, x := range b {
		if !am[x] {
			d = append(d, "+ "+x)
		}
	}
	if len(d) > 20 {
		d = append(d[:20], "…")
	}
	return fmt.Sprint(d)
}

// fileContains streams p looking for needle (files may be large and sparse).
func fileContains(p string, needle []byte) bool {
	fh, err := os.Open(p)
	if err != nil {
		return false
	}
	defer fh.Close()
	buf := make([]byte, 1<<20+len(needle))
	keep := 0
	for {
		n, err := fh.Read(buf[keep:])
		if bytes.Contains(buf[:keep+n], needle) {
			return true
		}
		if err != nil {
			return false
		}
		if keep+n >= len(needle) {
			copy(buf, buf[keep+n-len(needle)+1:keep+n])
			keep = len(needle) - 1
		}
	}
}
