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

// closeOnFullDisk persists letter.txt, then closes a session that changed
// it, added new.txt and wrote junk (paths in the sandbox) on a disk that
// something else filled, and frees the space after. The manifest is cut
// short before its first line: the test fails if the disk let it be
// written whole.
func closeOnFullDisk(t *testing.T, junk ...string) *fixture {
	t.Helper()
	f := smallDiskFixture(t)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, fullDocs+"/letter.txt", "version 1", 0o644)
	f.close()

	root = f.open()
	write(t, root, fullDocs+"/letter.txt", "version 2: an afternoon of work", 0o644)
	write(t, root, fullDocs+"/new.txt", "a new document", 0o644)
	for _, p := range junk {
		write(t, root, p, "scratch", 0o644)
	}
	sum := f.closeFilled()
	if got := refusal(sum, "/"+fullDocs+"/letter.txt"); got != RefuseNoSpace || !sum.Recovery.Kept() || !sum.ManifestIncomplete {
		t.Fatalf("the letter refused %q (want no-space), kept for recovery %v, manifest cut short %v: the test no longer fills the disk enough",
			got, sum.Recovery.Kept(), sum.ManifestIncomplete)
	}
	return f
}

const fullDocs = "home/user/Documents"

// closeFilled closes docs on a disk that something else filled (a fresh
// command, as after the fill), then frees the space.
func (f *fixture) closeFilled() *CloseSummary {
	f.t.Helper()
	must(f.t, f.e.Close())
	f.e = nil
	hog := filepath.Join(f.dir, "hog")
	fillFrom(f.t, hog)
	f.openEnv("")
	sum := f.close()
	must(f.t, os.Remove(hog))
	return sum
}

// wantUnlisted fails unless the recovery area lists the letter and the new
// document as refused.
func wantUnlisted(t *testing.T, f *fixture, when string) {
	t.Helper()
	got := f.listed()
	for _, p := range []string{"/" + fullDocs + "/letter.txt", "/" + fullDocs + "/new.txt"} {
		if got[p] != change.VerdictRefuse {
			t.Errorf("%s: %s was refused no-space and kept for recovery, but the recovery area lists %v", when, p, got)
		}
	}
}

// TestCloseOnAFullDiskKeepsRefusalsRecoverable: a close on a disk that
// something else filled refuses the session's documents (no-space) and
// keeps their content in the recovery area, but its manifest stops at the
// store's reserve before its first line. Once space is freed, recover
// still finds them (from the tree, as refused "unlisted"), and restores
// them. (Found on 30 November 2026: recover ls listed nothing and restore
// could not find the documents.)
func TestCloseOnAFullDiskKeepsRefusalsRecoverable(t *testing.T) {
	f := closeOnFullDisk(t)
	wantUnlisted(t, f, "after the close")
	res, err := f.e.RecoverRestore(f.ctx, "docs", RestoreOptions{Paths: []string{"/" + fullDocs}, Reason: "the disk was full"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 2 {
		t.Fatalf("restored %+v, want the letter and the new document", res.Records)
	}
	root := f.open()
	for p, want := range map[string]string{"letter.txt": "version 2: an afternoon of work", "new.txt": "a new document"} {
		if b, err := os.ReadFile(filepath.Join(root, fullDocs, p)); err != nil || string(b) != want {
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
	// More discarded than refused: the drop that moves the refused
	// entries out.
	f := closeOnFullDisk(t, "tmp/a", "tmp/b", "tmp/c", "tmp/d", "tmp/e")
	wantUnlisted(t, f, "after the close")
	// Past the discarded content's retention (a day), well within the
	// refused content's.
	f.e.clock = func() time.Time { return time.Now().Add(25 * time.Hour).UTC() }
	if _, err := f.e.ExpireRecovery(); err != nil {
		t.Fatal(err)
	}
	wantUnlisted(t, f, "after the discarded content expired")
}
