package sandboxpath

import "testing"

func TestIsClean(t *testing.T) {
	for _, c := range []struct {
		p    string
		want bool
	}{
		{"/", true},
		{"//", false},
		{"/a", true},
		{"/a/b", true},
		{"/a/", false},
		{"/a/../b", false},
		{"/a/./b", false},
		{"/..", false},
		{"/a//b", false},
		{"a", false},
		{"a/b", false},
		{"", false},
		{".", false},
		{"/a\x00b", false},
	} {
		if got := IsClean(c.p); got != c.want {
			t.Errorf("IsClean(%q) = %v, want %v", c.p, got, c.want)
		}
	}
}
