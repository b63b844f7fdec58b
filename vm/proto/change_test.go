package proto

import (
	"strings"
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// TestChangeLineRoundTrip: a change with a hostile name goes and comes back.
func TestChangeLineRoundTrip(t *testing.T) {
	c := Change{Kind: change.KindAdd, Path: "/home/a b\n\x1b[2J\xff", Type: change.TypeFile, Size: 9, Mode: 0o100644, UID: 1000, GID: 1000}
	id, f, q, ok := SplitChangeLine(c.Line("7"))
	if !ok || id != "7" {
		t.Fatalf("split %q: %v %q", c.Line("7"), ok, id)
	}
	got, err := ParseChange(f, q)
	if err != nil || got != c {
		t.Fatalf("got %+v, %v; want %+v", got, err, c)
	}
}

// TestChangeLineHostile: every malformed field of a guest's line is refused.
func TestChangeLineHostile(t *testing.T) {
	for _, line := range []string{
		`CHG 1 add file 1 100644 0 0 "/a/../etc/shadow"`,
		`CHG 1 add file 1 100644 0 0 "relative"`,
		`CHG 1 add file 1 100644 0 0 "/"`,
		`CHG 1 add file 1 100644 0 0 "/a//b"`,
		`CHG 1 add file 1 100644 0 0 "/a\x00b"`,
		`CHG 1 add file 1 100644 0 0 /unquoted`,
		`CHG 1 add file -1 100644 0 0 "/a"`,
		`CHG 1 add file 1 100644 -1 0 "/a"`,
		`CHG 1 add file 1 100644 4294967296 0 "/a"`,
		`CHG 1 rename file 1 100644 0 0 "/a"`,
		`CHG 1 add chardev 1 100644 0 0 "/a"`,
		`CHG 1 add file 1 9999 0 0 "/a"`,
		`CHG 1 add file 1 100644 0 0 "/` + strings.Repeat("a", 4096) + `"`,
	} {
		_, f, q, ok := SplitChangeLine(line)
		if !ok {
			continue
		}
		if c, err := ParseChange(f, q); err == nil {
			t.Errorf("%q accepted: %+v", line, c)
		}
	}
}
