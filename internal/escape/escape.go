// Package escape makes hostile names safe to print.
//
// Names from inside a sandbox may hold any byte but NUL and "/": newlines
// that forge a line of output, escape sequences that move the cursor or
// rewrite the terminal's title, bidirectional controls that reorder what a
// reviewer reads, and bytes that are not UTF-8 at all.
//
// Human output prints Name(s): every such byte or rune is written as a
// backslash escape, and the backslash itself as "\\", so the result holds no
// control byte, is valid UTF-8, and two distinct names never print the same
// (Unescape(Name(s)) == s).
//
// JSON output keeps names exact. A JSON string can only carry valid UTF-8, so
// a name is written as two fields:
//
//	"path":       the name as text (JSON's own escaping makes control
//	              characters safe); exact when the name is valid UTF-8,
//	              else each invalid byte becomes U+FFFD
//	"path_bytes": base64 of the exact bytes, present only when the name
//	              is not valid UTF-8 (IsExactInJSON reports false)
//
// JSON(s) returns both values; a []byte field with `json:",omitempty"` in
// encoding/json gives exactly that. Scripts that meet path_bytes must use
// it; path alone is then lossy.
package escape

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

const hex = "0123456789abcdef"

// escapedRune reports whether a valid rune must be escaped: C0 controls, DEL,
// C1 controls, line and paragraph separators and the bidirectional
// formatting characters (embeddings, overrides, isolates and marks).
func escapedRune(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, 0x80 <= r && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f: // ALM, LRM, RLM
		return true
	case 0x2028 <= r && r <= 0x202e: // LS, PS, LRE, RLE, PDF, LRO, RLO
		return true
	case 0x2066 <= r && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	}
	return false
}

// Name returns s with every control byte, invalid UTF-8 byte, Unicode line
// or paragraph separator, bidirectional control and backslash escaped:
//
//	\\ for a backslash, \t \n \r for those controls,
//	\xNN for any other ASCII control byte (\x1b for ESC, \x7f for DEL) and
//	     for each byte that is not part of valid UTF-8 (\xff),
//	\uNNNN for the escaped runes above U+007F (\u0085, \u2028, \u202e).
//
// Everything else, including spaces and non-ASCII letters, stays as is.
func Name(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteByte(hex[s[i]>>4])
			b.WriteByte(hex[s[i]&15])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80 && escapedRune(r):
			b.WriteString(`\x`)
			b.WriteByte(hex[r>>4])
			b.WriteByte(hex[r&15])
		case escapedRune(r):
			b.WriteString(`\u`)
			for shift := 12; shift >= 0; shift -= 4 {
				b.WriteByte(hex[(r>>shift)&15])
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f || c == '\\' {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || escapedRune(r) {
			return true
		}
		i += size
	}
	return false
}

// Unescape reverses Name: it decodes \\, \t, \n, \r, \xNN (one byte) and
// \uNNNN (one rune, four hex digits) and copies every other byte. It is
// meant for names a person copies back from human output. It fails on a
// lone or unknown escape.
func Unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			return "", errors.New("escaped name ends with a lone backslash (write \\\\ for a backslash)")
		}
		i++
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'x':
			v, ok := unhex(s, i+1, 2)
			if !ok {
				return "", fmt.Errorf("escaped name has a bad \\x escape at byte %d (want two hex digits)", i-1)
			}
			b.WriteByte(byte(v))
			i += 2
		case 'u':
			v, ok := unhex(s, i+1, 4)
			if !ok || (0xd800 <= v && v <= 0xdfff) {
				return "", fmt.Errorf("escaped name has a bad \\u escape at byte %d (want four hex digits)", i-1)
			}
			b.WriteRune(rune(v))
			i += 4
		default:
			return "", fmt.Errorf("escaped name has an unknown escape \\%c at byte %d (write \\\\ for a backslash)", s[i], i-1)
		}
	}
	return b.String(), nil
}

func unhex(s string, at, n int) (uint32, bool) {
	if at+n > len(s) {
		return 0, false
	}
	var v uint32
	for _, c := range []byte(s[at : at+n]) {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(d)
	}
	return v, true
}

// IsExactInJSON reports whether a JSON string can hold s exactly, that is,
// whether s is valid UTF-8. When it is not, JSON output adds the exact bytes
// (see the package documentation).
func IsExactInJSON(s string) bool { return utf8.ValidString(s) }

// JSON returns the two JSON fields of a name: text, valid UTF-8 and equal to
// s when s is valid UTF-8 (else each invalid byte is replaced by U+FFFD, as
// encoding/json would), and exact, the bytes of s when s is not valid UTF-8
// and nil otherwise. Put them in fields such as
//
//	Path      string `json:"path"`
//	PathBytes []byte `json:"path_bytes,omitempty"` // base64
func JSON(s string) (text string, exact []byte) {
	if utf8.ValidString(s) {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String(), []byte(s)
}
