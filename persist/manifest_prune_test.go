package persist

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/snapshot"
)

// sessionDirs lists the session directories of docs' recovery area.
func sessionDirs(t *testing.T, f *fixture) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.e.root, "recovery", "docs"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(got)
	return got
}

// TestManifestsOfOldSessionsGo checks that close keeps the recovery
// directories of the newest sessions only (--keep-sessions, default 7), a
// session that refused nothing only while it is the last, and that rm
// removes the sandbox's recovery directory.
func TestManifestsOfOldSessionsGo(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	f.except(func(x *exceptions.Exception) { x.Limits.MaxFileSize = 2 }, "/home/user/Documents/**")
	for i := 0; i < 3; i++ {
		root := f.open()
		write(t, root, "tmp/scratch.txt", "thrown away", 0o644)
		f.close()
	}
	if got := sessionDirs(t, f); !reflect.DeepEqual(got, []string{"3"}) {
		t.Fatalf("sessions that only discarded: recovery/docs holds %v, want the last only", got)
	}
	for i := 0; i < manifestSessions+3; i++ {
		root := f.open()
		write(t, root, "tmp/scratch.txt", "thrown away", 0o644)
		write(t, root, "home/user/Documents/big.txt", "too large", 0o644)
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
	want := []string{"10", "11", "12", "13", "7", "8", "9"}
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
