package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func write(t *testing.T, dir, data string) *File {
	t.Helper()
	f, err := Create(dir, ".tmp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Cleanup)
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	return f
}

func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	return m
}

func TestReplaceNeverWritesThroughASymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	dest := filepath.Join(dir, "out")
	os.Symlink(victim, dest)
	f := write(t, dir, "new")
	if err := f.Commit(dest, Replace); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatalf("wrote through the link: victim = %q", b)
	}
	if fi, _ := os.Lstat(dest); fi.Mode()&fs.ModeSymlink != 0 {
		t.Fatal("dest is still the symlink")
	}
	if b, _ := os.ReadFile(dest); string(b) != "new" {
		t.Fatalf("dest = %q", b)
	}
	f.Cleanup()
	if l := leftovers(t, dir); len(l) != 0 {
		t.Fatalf("temp files left: %v", l)
	}
}

func TestNoReplaceAndLinkRefuseAnExistingName(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	os.WriteFile(dest, []byte("old"), 0o600)
	for _, how := range []How{NoReplace, Link} {
		f := write(t, dir, "new")
		err := f.Commit(dest, how)
		if !errors.Is(err, fs.ErrExist) {
			t.Fatalf("how %d: err = %v, want ErrExist", how, err)
		}
		if b, _ := os.ReadFile(dest); string(b) != "old" {
			t.Fatalf("how %d: dest = %q", how, b)
		}
		f.Cleanup()
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Fatalf("temp files left: %v", l)
	}
}

func TestLinkKeepsTheTemporaryUntilCleanup(t *testing.T) {
	dir := t.TempDir()
	f := write(t, dir, "entry")
	for _, n := range []string{"a", "b"} {
		if err := f.Commit(filepath.Join(dir, n), Link); err != nil {
			t.Fatal(err)
		}
	}
	if len(leftovers(t, dir)) != 1 {
		t.Fatal("the temporary should remain until Cleanup")
	}
	f.Cleanup()
	if l := leftovers(t, dir); len(l) != 0 {
		t.Fatalf("temp files left: %v", l)
	}
	for _, n := range []string{"a", "b"} {
		if b, _ := os.ReadFile(filepath.Join(dir, n)); string(b) != "entry" {
			t.Fatalf("%s = %q", n, b)
		}
	}
}
