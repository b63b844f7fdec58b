package exceptions

import (
	"fmt"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/spillway/spillway/internal/sandboxpath"
)

// MaxPatternLen is the longest pattern accepted, in bytes (PATH_MAX).
const MaxPatternLen = 4096

// MaxAlternatives bounds how many patterns the "{…}" alternatives of one
// pattern may expand to; it keeps matching and lint cheap.
const MaxAlternatives = 1024

// ValidatePattern reports whether p is an acceptable pattern (see the
// package documentation) and, if not, says what is wrong in an error that
// names the pattern.
func ValidatePattern(p string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("pattern %q: %s", p, fmt.Sprintf(format, args...))
	}
	switch {
	case strings.IndexByte(p, 0) >= 0:
		return bad("must not contain a NUL byte")
	case !utf8.ValidString(p):
		return bad("must be valid UTF-8 (match other bytes with ? or *)")
	case strings.ContainsRune(p, utf8.RuneError):
		return bad("must not contain U+FFFD (it would also match bytes that are not UTF-8; use ? instead)")
	case len(p) > MaxPatternLen:
		return bad("is too long (%d bytes; the most is %d)", len(p), MaxPatternLen)
	case !strings.HasPrefix(p, "/"):
		return bad("must be an absolute path inside the sandbox (start with /)")
	}
	if !doublestar.ValidatePattern(p) {
		return bad("%s", syntaxProblem(p))
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' {
			if p[i+1] == '/' { // ValidatePattern ensured p[i+1] exists
				return bad("a backslash cannot escape /")
			}
			i++
		}
	}
	alts, ok := expand(p, MaxAlternatives)
	if !ok {
		return bad("has too many {…} alternatives (over %d combinations); split it into several patterns", MaxAlternatives)
	}
	for _, a := range alts {
		in := ""
		if a != p {
			in = fmt.Sprintf(" (in the alternative %q)", a)
		}
		if !strings.HasPrefix(a, "/") {
			return bad("must be an absolute path inside the sandbox (start with /)%s", in)
		}
		if a == "/" {
			continue
		}
		if strings.HasSuffix(a, "/") {
			return bad("must not end with / (write /dir/** for everything in a directory)%s", in)
		}
		for _, seg := range strings.Split(a[1:], "/") {
			switch unescape(seg) {
			case "":
				return bad("must be clean: no empty path element (//)%s", in)
			case ".", "..":
				return bad("must be clean: no . or .. element%s", in)
			}
			if !doublestar.ValidatePattern(seg) {
				return bad("the element %q is not a valid pattern (a [...] class cannot hold /)%s", seg, in)
			}
		}
	}
	return nil
}

// syntaxProblem explains why doublestar refused p.
func syntaxProblem(p string) string {
	depth := 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			if i+1 >= len(p) {
				return `ends with a lone \ (write \\ for a backslash)`
			}
			i++
		case '[':
			j := i + 1
			if j < len(p) && (p[j] == '!' || p[j] == '^') {
				j++
			}
			if j < len(p) && p[j] == ']' {
				return "has an empty [] class"
			}
			for ; j < len(p) && p[j] != ']'; j++ {
				if p[j] == '\\' {
					j++
				}
			}
			if j >= len(p) {
				return "has a [ without its ]"
			}
			i = j
		case '{':
			depth++
		case '}':
			if depth == 0 {
				return "has a } without its {"
			}
			depth--
		}
	}
	if depth > 0 {
		return "has a { without its }"
	}
	return "is not a valid pattern"
}

// isMeta reports whether c starts a wildcard in doublestar syntax.
func isMeta(c byte) bool { return c == '*' || c == '?' || c == '[' || c == '{' }

// unescape drops the backslash of each escape.
func unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// hasMeta reports whether s has an unescaped wildcard.
func hasMeta(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		} else if isMeta(s[i]) {
			return true
		}
	}
	return false
}

// skipClass returns the index of the "]" that closes the class opening at
// s[i] == '[', or len(s).
func skipClass(s string, i int) int {
	for i++; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		} else if s[i] == ']' {
			return i
		}
	}
	return len(s)
}

// expand returns the brace-free patterns that the "{…}" alternatives of a
// valid pattern p stand for, in order; ok is false when there would be more
// than limit (>= 1) of them.
func expand(p string, limit int) (out []string, ok bool) {
	open := -1
	for i := 0; i < len(p) && open < 0; i++ {
		switch p[i] {
		case '\\':
			i++
		case '[':
			i = skipClass(p, i)
		case '{':
			open = i
		}
	}
	if open < 0 {
		return []string{p}, true
	}
	// Find the matching "}" and the top-level commas between.
	var cuts []int // indexes of top-level commas, then of the closing brace
	depth := 0
	for i := open + 1; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case '[':
			i = skipClass(p, i)
		case '{':
			depth++
		case '}':
			if depth == 0 {
				cuts = append(cuts, i)
				i = len(p)
			} else {
				depth--
			}
		case ',':
			if depth == 0 {
				cuts = append(cuts, i)
			}
		}
	}
	if len(cuts) == 0 {
		return []string{p}, true // unbalanced: not a valid pattern
	}
	closing := cuts[len(cuts)-1]
	start := open + 1
	for _, c := range cuts {
		sub, ok := expand(p[:open]+p[start:c]+p[closing+1:], limit-len(out))
		if !ok {
			return nil, false
		}
		out = append(out, sub...)
		if len(out) > limit {
			return nil, false
		}
		start = c + 1
	}
	return out, true
}

// FixedPrefix returns the longest leading path of whole elements of pattern
// p that holds no wildcard, with escapes removed: "/home/user/Documents" for
// "/home/user/Documents/*.odt", "/home" for "/home/*/x", "/" for "/*". It is
// the directory every match lies in (or is), for example to check that it
// does not pass through a symlink of the image. p should be valid.
func FixedPrefix(p string) string {
	if !strings.HasPrefix(p, "/") {
		return ""
	}
	prefix := "/"
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || hasMeta(seg) {
			break
		}
		prefix = path.Join(prefix, unescape(seg))
	}
	return prefix
}

// IsCleanPath reports whether p is a clean absolute path without NUL: the
// only kind of path Matches accepts.
func IsCleanPath(p string) bool {
	return sandboxpath.IsClean(p)
}

// Matches reports whether any pattern of e matches the path p, regardless of
// e's state (see Match). p is taken literally; a path that is not clean and
// absolute (IsCleanPath) never matches. A pattern ending in "/**" also
// matches the directory it names.
func (e *Exception) Matches(p string) bool {
	if e == nil || !IsCleanPath(p) {
		return false
	}
	for _, pat := range e.Patterns {
		if ok, err := doublestar.Match(pat, p); ok && err == nil {
			return true
		}
	}
	return false
}

// Match returns the first rule, in the given order, that is active at now
// and matches p, or nil.
func Match(rules []*Exception, p string, now time.Time) *Exception {
	for _, e := range rules {
		if e != nil && e.Active(now) && e.Matches(p) {
			return e
		}
	}
	return nil
}
