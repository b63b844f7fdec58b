package persist

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// recordOf returns the id close gave path.
func recordOf(t *testing.T, sum *CloseSummary, p string) uint64 {
	t.Helper()
	for _, r := range sum.Persisted {
		if r.Path == p {
			return r.Record
		}
	}
	t.Fatalf("%s not persisted: %+v", p, sum)
	return 0
}

// TestApplyNeverWritesThroughPersistedLink is the reproduction of issue 11
// class 2: a persisted link, later replaced by a directory with a file,
// then the directory's record alone rejected. The state left holds the
// link and a child below it; open must not write the child where the link
// points (the image's /etc/passwd), and check must name the child.
func TestApplyNeverWritesThroughPersistedLink(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	f.except(func(x *exceptions.Exception) { x.AllowSymlinks, x.Forced = true, true }, "/home/user/Documents/**")
	passwd, err := os.ReadFile(filepath.Join(busyboxRootfs(t), "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]string{"rel": "../../../etc", "abs": "/etc"}
	root := f.open()
	for n, target := range links {
		if err := os.Symlink(target, filepath.Join(root, docs, n)); err != nil {
			t.Fatal(err)
		}
	}
	f.close()
	root = f.open()
	for n := range links {
		p := filepath.Join(root, docs, n)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		write(t, root, filepath.Join(docs, n, "passwd"), "pwned::0:0::/:/bin/sh\n", 0o644)
	}
	sum := f.close()
	var dirs []uint64
	for n := range links {
		dirs = append(dirs, recordOf(t, sum, "/"+docs+"/"+n))
	}
	if _, err := f.e.Reject(context.Background(), dirs, "keep the links"); err != nil {
		t.Fatal(err)
	}
	root = f.open()
	if b, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err != nil || string(b) != string(passwd) {
		t.Fatalf("/etc/passwd in the sandbox is %q (%v), want the image's", b, err)
	}
	for n, target := range links {
		if got, err := os.Readlink(filepath.Join(root, docs, n)); err != nil || got != target {
			t.Fatalf("%s: link %q %v, want %q", n, got, err, target)
		}
	}
	problems, err := f.e.Check(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for n := range links {
		id := recordOf(t, sum, "/"+docs+"/"+n+"/passwd")
		want := "record r" + strconv.FormatUint(id, 10) + " (/" + docs + "/" + n + "/passwd) lies under /" + docs + "/" + n
		if !containsLine(problems, want) {
			t.Errorf("check does not name the orphaned child r%d: %q", id, problems)
		}
	}
	recs, err := f.e.Persisted(context.Background(), "docs")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if strings.HasSuffix(r.Path, "/passwd") {
			t.Errorf("persisted state holds %s under a link", r.Path)
		}
	}
	f.close()
}

// TestCorruptBlobFailsOpen: a blob altered on disk makes open fail naming
// the record and path, leaves the sandbox closed with no layer built and
// nothing mounted, and check still names the blob.
func TestCorruptBlobFailsOpen(t *testing.T) {
	for _, how := range []string{"same-size", "longer", "shorter"} {
		t.Run(how, func(t *testing.T) {
			f := newFixture(t, snapshot.KindOverlay)
			f.except(nil, "/home/user/Documents/**")
			root := f.open()
			write(t, root, docs+"/a.txt", "first document", 0o644)
			write(t, root, docs+"/b.txt", "second document", 0o644)
			sum := f.close()
			id := recordOf(t, sum, "/"+docs+"/b.txt")
			var digest string
			for _, p := range sum.Persisted {
				if p.Record == id {
					digest = p.Digest
				}
			}
			bp, err := f.e.blobs.Path(digest)
			if err != nil {
				t.Fatal(err)
			}
			good, _ := os.ReadFile(bp)
			bad := map[string]string{"same-size": "SECOND document", "longer": "second document!", "shorter": "second"}[how]
			if err := os.WriteFile(bp, []byte(bad), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = f.e.OpenSandbox(f.ctx, "docs")
			if err == nil || !errdefs.IsDataLoss(err) || !strings.Contains(err.Error(), "record r"+strconv.FormatUint(id, 10)) ||
				!strings.Contains(err.Error(), "/"+docs+"/b.txt") {
				t.Fatalf("open with a corrupt blob: %v", err)
			}
			sb, _ := f.e.getSandbox("docs")
			if sb.State != store.StateClosed {
				t.Fatalf("sandbox is %s after a failed open", sb.State)
			}
			keys, _ := f.e.snap.Keys(f.ctx)
			for _, k := range keys {
				if strings.HasPrefix(k, "sbx/docs/") {
					t.Errorf("snapshot %s left by a failed open", k)
				}
			}
			if ms := mustMounts(t, f.e.root); len(ms) != 0 {
				t.Errorf("mounted after a failed open: %v", ms)
			}
			if ents, _ := os.ReadDir(f.e.tmpDir()); len(ents) != 0 {
				t.Errorf("temp files left by a failed open: %v", ents)
			}
			problems, _ := f.e.Check(f.ctx)
			if !containsLine(problems, "blob "+digest+" hashes to") {
				t.Errorf("check: %q", problems)
			}
			if err := os.WriteFile(bp, good, 0o600); err != nil {
				t.Fatal(err)
			}
			root = f.open()
			if b, _ := os.ReadFile(filepath.Join(root, docs, "b.txt")); string(b) != "second document" {
				t.Fatalf("b.txt after repair: %q", b)
			}
			f.close()
		})
	}
}
