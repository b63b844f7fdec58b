package persist

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
)

// fillFrom writes a file at path (outside any sandbox) until the
// filesystem is full, as another program on the host would.
func fillFrom(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	must(t, err)
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for _, n := range []int{64 << 10, 4096} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
}

// A close on a disk that something else filled refuses the session's
// documents (no-space) and keeps their content in the recovery area, but
// its manifest stops at the store's reserve before its first line. Once
// space is freed, recover still finds them (from the tree, as refused
// "unlisted"), and restores them. (Found on 30 November 2026: recover ls
// listed nothing and restore could not find the documents.)
func TestCloseOnAFullDiskKeepsRefusalsRecoverable(t *testing.T) {
	f := smallDiskFixture(t)
	f.except(nil, "/home/user/Documents/**")
	docs := "home/user/Documents"

	root := f.open()
	write(t, root, docs+"/letter.txt", "version 1", 0o644)
	f.close()

	root = f.open()
	write(t, root, docs+"/letter.txt", "version 2: an afternoon of work", 0o644)
	write(t, root, docs+"/new.txt", "a new document", 0o644)
	must(t, f.e.Close())
	f.e = nil
	hog := filepath.Join(f.dir, "hog")
	fillFrom(t, hog)
	f.openEnv("")
	sum := f.close()
	if got := refusal(sum, "/home/user/Documents/letter.txt"); got != RefuseNoSpace && !persisted(sum, "/home/user/Documents/letter.txt") {
		t.Fatalf("letter.txt neither persisted nor refused no-space: %q", got)
	}
	if !persisted(sum, "/home/user/Documents/letter.txt") && !sum.Recovery.Kept() {
		t.Fatalf("letter.txt refused and nothing kept for recovery: %+v", sum.Recovery)
	}
	must(t, os.Remove(hog))

	if persisted(sum, "/home/user/Documents/letter.txt") || !sum.ManifestIncomplete {
		t.Fatalf("the full disk let the letter persist (%v) or the manifest be written whole (%v): the test no longer fills it enough",
			persisted(sum, "/home/user/Documents/letter.txt"), !sum.ManifestIncomplete)
	}
	got := f.listed()
	for _, p := range []string{"/home/user/Documents/letter.txt", "/home/user/Documents/new.txt"} {
		if got[p] != change.VerdictRefuse {
			t.Errorf("%s refused no-space and said kept for recovery, but the recovery area lists %v", p, got)
		}
	}
	res, err := f.e.RecoverRestore(f.ctx, "docs", RestoreOptions{Paths: []string{"/home/user/Documents"}, Reason: "the disk was full"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 2 {
		t.Fatalf("restored %+v, want the letter and the new document", res.Records)
	}
	root = f.open()
	for p, want := range map[string]string{"letter.txt": "version 2: an afternoon of work", "new.txt": "a new document"} {
		if b, err := os.ReadFile(filepath.Join(root, docs, p)); err != nil || string(b) != want {
			t.Errorf("%s after the restore: %q, %v; want %q", p, b, err, want)
		}
	}
	f.close()
}

// TestUnlistedSurviveDiscardedExpiry: the documents a close on a full
// disk kept but could not list are listed as refused ("unlisted", kept
// with the refused content), and stay when the discarded content expires
// a day later: dropDiscarded then removes only what the manifest lists as
// discarded (it kept only the refused entries the manifest lists, and
// trashed the rest: found by a review).
func TestUnlistedSurviveDiscardedExpiry(t *testing.T) {
	f := smallDiskFixture(t)
	f.except(nil, "/home/user/Documents/**")
	docs := "home/user/Documents"

	root := f.open()
	write(t, root, docs+"/letter.txt", "version 1", 0o644)
	f.close()

	root = f.open()
	write(t, root, docs+"/letter.txt", "version 2: an afternoon of work", 0o644)
	write(t, root, docs+"/new.txt", "a new document", 0o644)
	for _, p := range []string{"tmp/a", "tmp/b", "tmp/c", "tmp/d", "tmp/e"} {
		write(t, root, p, "scratch", 0o644) // discarded: more than refused
	}
	must(t, f.e.Close())
	f.e = nil
	hog := filepath.Join(f.dir, "hog")
	fillFrom(t, hog)
	f.openEnv("")
	sum := f.close()
	must(t, os.Remove(hog))
	if persisted(sum, "/home/user/Documents/letter.txt") || !sum.ManifestIncomplete {
		t.Fatalf("the full disk let the letter persist (%v) or the manifest be written whole (%v): the test no longer fills it enough",
			persisted(sum, "/home/user/Documents/letter.txt"), !sum.ManifestIncomplete)
	}
	if got := f.listed(); got["/home/user/Documents/letter.txt"] != change.VerdictRefuse {
		t.Fatalf("letter.txt not listed as refused right after the close: %v", got)
	}
	// Past the discarded content's retention (a day), well within the
	// refused content's.
	f.e.clock = func() time.Time { return time.Now().Add(25 * time.Hour).UTC() }
	if _, err := f.e.ExpireRecovery(); err != nil {
		t.Fatal(err)
	}
	got := f.listed()
	if len(got) == 0 {
		entries, _ := os.ReadDir(filepath.Join(f.e.root, "recovery", "docs", "2"))
		for _, e := range entries {
			t.Logf("session 2 holds %s", e.Name())
		}
		info, _ := os.ReadFile(filepath.Join(f.e.root, "recovery", "docs", "2", "info.json"))
		t.Logf("info.json: %s", info)
	}
	for _, p := range []string{"/home/user/Documents/letter.txt", "/home/user/Documents/new.txt"} {
		if got[p] != change.VerdictRefuse {
			t.Errorf("%s was listed as refused (kept with the refused content), but after the discarded content expired the recovery area lists %v", p, got)
		}
	}
}
