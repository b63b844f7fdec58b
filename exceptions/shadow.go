package exceptions

import (
	"strings"
	"time"
)

// SamplePath is one path pattern matches, made by putting "x" for each
// wildcard ("*", "**", "?"), the first character of a class and the first
// alternative of a brace: a path to ask other rules about (Shadowed).
func SamplePath(pattern string) string {
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch c {
		case '\\':
			if i+1 < len(pattern) {
				i++
				b.WriteByte(pattern[i])
			}
		case '*':
			for i+1 < len(pattern) && pattern[i+1] == '*' {
				i++
			}
			b.WriteByte('x')
		case '?':
			b.WriteByte('x')
		case '[':
			end := strings.IndexByte(pattern[i+1:], ']')
			if end < 0 {
				b.WriteByte(c)
				continue
			}
			class := strings.TrimLeft(pattern[i+1:i+1+end], "!^")
			if class == "" || strings.HasPrefix(pattern[i+1:], "!") || strings.HasPrefix(pattern[i+1:], "^") {
				b.WriteByte('x') // a negated class: "x" is as good a guess as any
			} else {
				b.WriteByte(class[0])
			}
			i += end + 1
		case '{':
			end := strings.IndexByte(pattern[i+1:], '}')
			if end < 0 {
				b.WriteByte(c)
				continue
			}
			alt, _, _ := strings.Cut(pattern[i+1:i+1+end], ",")
			b.WriteString(SamplePath(alt))
			i += end + 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Shadowed returns, for each pattern of x that has one, the first of the
// rules (in their matching order: the older first) other than x that is
// active and matches a path of that pattern (SamplePath) before x could:
// the oldest matching rule decides, so x's review mode and limits never
// apply to such paths.
func Shadowed(x *Exception, older []*Exception, now time.Time) map[string]*Exception {
	out := map[string]*Exception{}
	for _, p := range x.Patterns {
		sample := SamplePath(p)
		if !x.Matches(sample) {
			continue // the guess is not one of x's paths: say nothing
		}
		for _, y := range older {
			if y == nil || y.ID == x.ID || !y.Active(now) {
				continue
			}
			if y.Matches(sample) {
				out[p] = y
				break
			}
		}
	}
	return out
}
