package persist

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/spillway/spillway/snapshot"
)

// TestManifestsOfOldSessionsGo checks that close keeps the manifests of the
// newest sessions only, so discarded lists do not grow forever, and that rm
// removes the sandbox's recovery directory.
func TestManifestsOfOldSessionsGo(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	for i := 0; i < manifestSessions+3; i++ {
		root := f.open()
		write(t, root, "tmp/scratch.txt", "thrown away", 0o644)
		f.close()
	}
	dir := filepath.Join(f.e.root, "recovery", "docs")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "manifest.jsonl")); err != nil {
			t.Errorf("session %s kept its directory but not its manifest: %v", e.Name(), err)
		}
	}
	sort.Strings(got)
	want := []string{"10", "4", "5", "6", "7", "8", "9"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("recovery/docs holds sessions %v, want %v", got, want)
	}
	if err := f.e.RemoveSandbox(f.ctx, "docs", false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatalf("rm left %s: %v", dir, err)
	}
}
