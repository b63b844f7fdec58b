package persist

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRmOfASandboxRemovedElsewhereKeepsFencedWork: h1 has docs open with
// unsaved work; h2 evicts h1, takes docs over, closes and removes it. A
// plain rm of docs on h1 removes what is left of it there, but fences the
// open root into the recovery area and keeps it, warned of: recover ls
// and export reach it although the ledger has no docs, and purge removes
// it. (Found by a review: the rm removed it with every other session.)
func TestRmOfASandboxRemovedElsewhereKeepsFencedWork(t *testing.T) {
	h1, h2 := fleetFixtures(t)
	const letter = "/home/user/Documents/letter.txt"
	root := h1.open()
	write(t, root, letter, "unsaved draft", 0o644)
	if _, err := h2.e.EvictHost("h1", "looked dead", true); err != nil {
		t.Fatal(err)
	}
	h2.open()
	h2.close()
	if err := h2.e.RemoveSandbox(h2.ctx, "docs", false, nil); err != nil {
		t.Fatal(err)
	}
	var warned []string
	h1.e.warn = func(m string) { warned = append(warned, m) }
	if err := h1.e.RemoveSandbox(h1.ctx, "docs", false, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(warned, func(m string) bool { return strings.HasPrefix(m, "kept session 1 of docs, removed from the ledger") }) {
		t.Errorf("rm on h1 warned %q, want the kept session named", warned)
	}
	var found []string
	if err := h1.e.RecoverList(h1.ctx, "docs", 0, "", func(x RecoverEntry) error { found = append(found, x.Path); return nil }); err != nil {
		t.Fatalf("recover ls of the removed sandbox: %v", err)
	}
	if len(found) != 1 || found[0] != letter {
		t.Fatalf("recover ls after rm: %q, want the letter", found)
	}
	dest := filepath.Join(t.TempDir(), "letter.txt")
	if _, err := h1.e.RecoverExport(h1.ctx, "docs", letter, dest, 0, false); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dest); err != nil || string(b) != "unsaved draft" {
		t.Fatalf("exported %q, %v", b, err)
	}
	if d, err := h1.e.RecoverPurge("docs", 0); err != nil || d.Sessions != 1 {
		t.Fatalf("recover purge: %+v, %v", d, err)
	}
	if _, err := h1.e.RecoverPurge("docs", 0); err == nil {
		t.Fatal("a second purge of a removed sandbox with nothing left: want not found")
	}
}
