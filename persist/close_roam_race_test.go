package persist

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCloseWhileAnotherHostOpens: h1's close commits, which releases the
// lease, and h2 opens the sandbox before h1 has finished: h1 still keeps
// its own session's refused and discarded content (session 1, not h2's
// session 2), notes the generation its own close committed, removes its
// root, and check passes on both hosts.
func TestCloseWhileAnotherHostOpens(t *testing.T) {
	h1, h2 := fleetFixtures(t)
	root := h1.open()
	write(t, root, "/home/user/Documents/letter.txt", "closed on h1", 0o644)
	write(t, root, "/tmp/scratch", "discarded", 0o644)
	testHookCloseCommitted = func(string) {
		testHookCloseCommitted = nil
		h2.open()
	}
	t.Cleanup(func() { testHookCloseCommitted = nil })
	sum, err := h1.e.CloseSandbox(h1.ctx, "docs", CloseOptions{})
	if err != nil {
		t.Fatalf("h1's close while h2 opened: %v", err)
	}
	if sum.Generation != 1 {
		t.Fatalf("h1's close committed generation %d, want 1", sum.Generation)
	}
	if g, _, ok := h1.e.committedHere("docs", 1); !ok || g != 1 {
		t.Errorf("h1's note of session 1: generation %d, %v; want 1", g, ok)
	}
	if _, _, ok := h1.e.committedHere("docs", 2); ok {
		t.Error("h1 noted a commit of session 2, h2's")
	}
	var kept []string
	if err := h1.e.RecoverList(h1.ctx, "docs", 1, "", func(x RecoverEntry) error { kept = append(kept, x.Path); return nil }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(kept, " "), "/tmp/scratch") {
		t.Errorf("h1's recovery area of session 1 lists %q, want the discarded scratch file", kept)
	}
	if b, err := os.ReadFile(filepath.Join(h2.e.MountPath("docs"), "home/user/Documents/letter.txt")); err != nil || string(b) != "closed on h1" {
		t.Errorf("h2's root: %q, %v", b, err)
	}
	h2.close()
	for _, h := range []*fixture{h1, h2} {
		if problems, err := h.e.Check(h.ctx); err != nil || len(problems) != 0 {
			t.Errorf("check: %q, %v", problems, err)
		}
	}
}
