package names

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	for _, n := range []string{"docs", "a", "A.b_c-1", "0", strings.Repeat("x", 63), "a..b"} {
		if !Valid(n) {
			t.Errorf("Valid(%q) = false", n)
		}
	}
	for _, n := range []string{"", ".", "..", "../x", "a/b", "-a", ".a", "_a", "a b", "a\x00", strings.Repeat("x", 64), "é"} {
		if Valid(n) {
			t.Errorf("Valid(%q) = true", n)
		}
	}
}
