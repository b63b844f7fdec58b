package persist

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestGCVMRuns: gc removes the run directories of `run --vm` that no run
// entry names once their sandbox's keep-refused time has passed (at once
// for a removed sandbox), and keeps those a run entry names or still
// within it, and the directory of a run still starting (its entry has no
// VM details yet).
func TestGCVMRuns(t *testing.T) {
	f := newFixture(t, "overlayfs")
	vm := filepath.Join(f.e.RunDir(), "vm")
	mk := func(name string, age time.Duration) string {
		p := filepath.Join(vm, name)
		must(t, os.MkdirAll(p, 0o700))
		must(t, os.WriteFile(filepath.Join(p, "scratch.img"), []byte("guest data"), 0o600))
		old := time.Now().Add(-age)
		must(t, os.Chtimes(p, old, old))
		return p
	}
	fresh := mk("spillway-docs-1.111", time.Hour)
	old := mk("spillway-docs-2.222", 8*24*time.Hour)
	gone := mk("spillway-removed-1.333", time.Hour)
	named := mk("spillway-docs-3.444", 30*24*time.Hour)
	starting := mk("spillway-docs-4.555", 30*24*time.Hour)
	sbx := filepath.Join(f.e.RunDir(), "sbx", "docs")
	must(t, os.MkdirAll(sbx, 0o700))
	must(t, os.WriteFile(filepath.Join(sbx, "spillway-docs-3.json"), []byte(`{"id":"spillway-docs-3","sandbox":"docs","vm":{"dir":"`+named+`"}}`), 0o600))
	must(t, os.WriteFile(filepath.Join(sbx, "spillway-docs-4.json"), []byte(`{"id":"spillway-docs-4","sandbox":"docs"}`), 0o600))
	fr, err := f.e.GC(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{fresh: true, old: false, gone: false, named: true, starting: true} {
		if _, err := os.Lstat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
	if !slices.Contains(fr.TempFiles, "run/vm/spillway-docs-2.222") {
		t.Errorf("gc's report %v does not name the old run directory", fr.TempFiles)
	}
}
