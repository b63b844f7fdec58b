package snapshot

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestEscaping(t *testing.T) {
	long := map[string]string{}
	for i := 0; i <= 40; i++ {
		long[fmt.Sprintf("c%d", i)] = fmt.Sprintf("c%d", i+1)
	}
	cases := []struct {
		name  string
		links map[string]string
		want  string // the link refused, or ""
		why   string
	}{
		{"inside", map[string]string{"lib": "usr/lib", "usr/lib/libc.so": "../../lib/libc.so.6", "etc/mtab": "/proc/mounts"}, "", ""},
		{"chain-out", map[string]string{"d/l": "..", "e": "d/l/.."}, "e", "leads outside"},
		{"through-absolute", map[string]string{"a": "/", "b": "a/.."}, "b", "leads outside"},
		{"deep-relative", map[string]string{"a/b/c": "../../../x"}, "a/b/c", "leads outside"},
		{"two-step", map[string]string{"x/up": "..", "y": "x/up/x/up/.."}, "y", "leads outside"},
		{"loop", map[string]string{"l1": "l2/x", "l2": "l1/.."}, "", ""},
		{"self", map[string]string{"s": "s"}, "", ""},
		{"41-links", long, "c0", "more than 40"},
		{"abs-dotdot", map[string]string{"x": "/.."}, "x", "leads outside"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, why := escaping(c.links)
			if got != c.want || !strings.Contains(why, c.why) {
				t.Fatalf("escaping = %q, %q; want %q, %q", got, why, c.want, c.why)
			}
		})
	}
}

// TestEscapingLinear: a step costs one component, not the whole path: 1,000
// links whose targets take 4,001 steps each resolve in about a second.
func TestEscapingLinear(t *testing.T) {
	links := map[string]string{}
	deep := strings.Repeat("d/", 2000) + strings.Repeat("../", 2000) + "x"
	for i := 0; i < 1000; i++ {
		links[fmt.Sprintf("l%d", i)] = deep
	}
	start := time.Now()
	if got, why := escaping(links); got != "" {
		t.Fatalf("escaping = %q, %q", got, why)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
}
