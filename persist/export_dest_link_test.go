package persist

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spillway/spillway/snapshot"
)

// TestExportDirNeverThroughLinkAtDest: a directory export never writes
// through a symlink at DEST. The CLI (exportTree) and RecoverExport
// (makeExportDir) check DEST with Lstat, then open it again by name
// (hostile.NewWriter), which followed a final symlink: whoever can write
// DEST's directory could swap DEST for a symlink between the two and have
// root write the sandbox's files into /etc, over its files (found by an
// attack on 30 November 2026). ExportDir given a symlink stands for that
// swap: it refuses it and leaves the link's target untouched.
//
// DEST given as "out/" (as shell completion writes a directory) resolved
// the symlink whatever O_NOFOLLOW says: it is refused too (found by a
// review).
func TestExportDirNeverThroughLinkAtDest(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "home/user/Documents/passwd", "evil::0:0::/:/bin/sh\n", 0o644)
	f.close()

	set, err := f.e.Export(f.ctx, "docs", "/home/user/Documents", At{})
	if err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "/"} {
		victim := t.TempDir() // stands for /etc
		if err := os.WriteFile(filepath.Join(victim, "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(t.TempDir(), "out")
		if err := os.Symlink(victim, dest); err != nil {
			t.Fatal(err)
		}
		_, err = f.e.ExportDir(f.ctx, set, dest+suffix)
		if b, _ := os.ReadFile(filepath.Join(victim, "passwd")); string(b) != "root:x:0:0::/root:/bin/sh\n" {
			t.Errorf("DEST %q: the export wrote through the symlink: the target's passwd is now %q (export error: %v)", "out"+suffix, b, err)
		}
		if err == nil {
			t.Errorf("DEST %q: ExportDir accepted a symlink", "out"+suffix)
		}
	}
}
