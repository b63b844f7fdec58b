package hostile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestNewWriterRefusesASymlinkRoot: NewWriter never follows a symlink at
// root, not even given with a trailing slash ("out/", as shell completion
// writes a directory), which resolves it whatever O_NOFOLLOW says (found
// by a review).
func TestNewWriterRefusesASymlinkRoot(t *testing.T) {
	d := t.TempDir()
	if err := os.Symlink(t.TempDir(), filepath.Join(d, "l")); err != nil {
		t.Fatal(err)
	}
	_, err := NewWriter(filepath.Join(d, "l"))
	if !errors.Is(err, ErrSymlink) {
		t.Fatalf("%v", err)
	}
	t.Log(err)
	// a trailing slash: "l/" resolves the link whatever O_NOFOLLOW says
	w, err := NewWriter(filepath.Join(d, "l") + "/")
	t.Logf("trailing slash: %v %v", w, err)
	if err == nil {
		t.Errorf("NewWriter(%q) followed the symlink", filepath.Join(d, "l")+"/")
	}
}
