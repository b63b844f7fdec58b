package exceptions

import (
	"testing"
	"time"
)

func TestSamplePath(t *testing.T) {
	for pat, want := range map[string]string{
		"/home/user/Documents/*.secret": "/home/user/Documents/x.secret",
		"/home/user/**":                 "/home/user/x",
		"/a/?b/[cd]e/{f,g}h":            "/a/xb/ce/fh",
		`/a/\*b`:                        "/a/*b",
		"/a/[!c]":                       "/a/x",
	} {
		if got := SamplePath(pat); got != want {
			t.Errorf("SamplePath(%q) = %q, want %q", pat, got, want)
		}
	}
}

// TestShadowed: a newer, narrower rule under an older broad one is
// shadowed (the oldest matching rule decides); one beside it, or under a
// revoked rule, is not.
func TestShadowed(t *testing.T) {
	now := time.Now()
	broad := &Exception{ID: "ex1", Patterns: []string{"/home/user/Documents/**"}}
	revoked := &Exception{ID: "ex2", Patterns: []string{"/home/user/notes/**"}, Revoked: now.Add(-time.Hour)}
	narrow := &Exception{ID: "ex3", Patterns: []string{"/home/user/Documents/*.secret", "/home/user/notes/*.md", "/srv/**"}}
	got := Shadowed(narrow, []*Exception{broad, revoked, narrow}, now)
	if len(got) != 1 || got["/home/user/Documents/*.secret"] != broad {
		t.Errorf("Shadowed = %v, want only the Documents pattern, by ex1", got)
	}
}
