package hostile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// TestEntryAndSubtreeNeverFollowLinks: Entry describes the entry itself (a
// link is a link, with its target), refuses a link on the way, and says
// ErrNotFound for nothing or a file on the way; SubtreeAdds lists below a
// directory only, parents first, never through a link.
func TestEntryAndSubtreeNeverFollowLinks(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "d/sub"), 0o750))
	must(os.WriteFile(filepath.Join(root, "d/sub/f"), []byte("x"), 0o640))
	must(os.WriteFile(filepath.Join(root, "d/g"), []byte("yy"), 0o600))
	must(os.Symlink(outside, filepath.Join(root, "d/link")))
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644))
	must(os.Symlink(outside, filepath.Join(root, "l")))

	c, err := Entry(root, "/d/sub")
	if err != nil || c.Type != change.TypeDir || c.Mode&0o7777 != 0o750 {
		t.Fatalf("Entry /d/sub = %+v, %v", c, err)
	}
	if c, err := Entry(root, "/d/link"); err != nil || c.Type != change.TypeSymlink || c.Link != outside {
		t.Fatalf("Entry /d/link = %+v, %v", c, err)
	}
	if _, err := Entry(root, "/l/secret"); !errors.Is(err, ErrSymlink) {
		t.Fatalf("Entry through a link: %v, want ErrSymlink", err)
	}
	if _, err := Entry(root, "/d/g/x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Entry under a file: %v, want ErrNotFound", err)
	}
	if _, err := Entry(root, "/nothing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Entry of nothing: %v, want ErrNotFound", err)
	}
	var got []string
	must(SubtreeAdds(context.Background(), root, "/d", func(c Change) error {
		got = append(got, c.Path+" "+string(c.Type))
		return nil
	}))
	want := []string{"/d/g file", "/d/link symlink", "/d/sub dir", "/d/sub/f file"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("SubtreeAdds /d = %v, want %v", got, want)
	}
	if err := SubtreeAdds(context.Background(), root, "/l", func(Change) error { return nil }); !errors.Is(err, ErrSymlink) {
		t.Fatalf("SubtreeAdds of a link: %v, want ErrSymlink", err)
	}
}
