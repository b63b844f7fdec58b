package escape

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestName(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"report.odt", "report.odt"},
		{"my report (final).odt", "my report (final).odt"},
		{"Ünïcödé 文件 😀", "Ünïcödé 文件 😀"},
		{"a\nb", `a\nb`},
		{"a\tb\rc", `a\tb\rc`},
		{"\x1b[2J\x1b]0;owned\x07", `\x1b[2J\x1b]0;owned\x07`},
		{"del\x7f", `del\x7f`},
		{"nul\x00", `nul\x00`},
		{`back\slash`, `back\\slash`},
		{`\n`, `\\n`}, // a literal backslash-n is not a newline
		{"\xff\xfe", `\xff\xfe`},
		{"caf\xe9", `caf\xe9`},           // Latin-1, not UTF-8
		{"\xe2\x80", `\xe2\x80`},         // truncated UTF-8
		{"\xed\xa0\x80", `\xed\xa0\x80`}, // surrogate
		{"\u0085next", `\u0085next`},     // C1 NEL
		{"\u009b31m", `\u009b31m`},       // C1 CSI
		{"line\u2028sep\u2029", `line\u2028sep\u2029`},
		{"txt.\u202eexe.odt", `txt.\u202eexe.odt`}, // RLO
		{"\u2066x\u2069", `\u2066x\u2069`},
		{"\u200e\u200f\u061c", `\u200e\u200f\u061c`},
		{"\ufffd", "\ufffd"}, // a real U+FFFD stays; an invalid byte does not
		{"\u200d", "\u200d"}, // ZWJ (emoji sequences) stays
	} {
		got := Name(c.in)
		if got != c.want {
			t.Errorf("Name(%q) = %q; want %q", c.in, got, c.want)
		}
		back, err := Unescape(got)
		if err != nil || back != c.in {
			t.Errorf("Unescape(%q) = %q, %v; want %q", got, back, err, c.in)
		}
	}
}

func TestNameIsInjective(t *testing.T) {
	// Pairs that a careless escaper prints the same.
	for _, p := range [][2]string{
		{"a\nb", `a\nb`},
		{"\x1b", `\x1b`},
		{"\xff", "\ufffd"},
		{"\xc2\x85", "\x85"}, // the C1 rune vs the lone byte
		{"\u2028", `\u2028`},
		{"\\", `\\`},
	} {
		if Name(p[0]) == Name(p[1]) {
			t.Errorf("Name(%q) == Name(%q) == %q", p[0], p[1], Name(p[0]))
		}
	}
}

func TestUnescapeErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`a\`, "lone backslash"},
		{`\q`, `unknown escape \q`},
		{`\x`, `bad \x escape`},
		{`\x4`, `bad \x escape`},
		{`\xzz`, `bad \x escape`},
		{`\u12`, `bad \u escape`},
		{`\ud800`, `bad \u escape`},
	} {
		_, err := Unescape(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Unescape(%q) error = %v; want it to contain %q", c.in, err, c.want)
		}
	}
	if got, err := Unescape(`\X41\u00e9`); err == nil {
		t.Errorf("Unescape accepted \\X: %q", got)
	}
	if got, err := Unescape(`\x41\u00E9`); err != nil || got != "Aé" {
		t.Errorf("Unescape = %q, %v", got, err)
	}
}

func TestJSON(t *testing.T) {
	type rec struct {
		Path      string `json:"path"`
		PathBytes []byte `json:"path_bytes,omitempty"`
	}
	for _, c := range []struct {
		in       string
		wantJSON string
	}{
		{"/home/u/a.odt", `{"path":"/home/u/a.odt"}`},
		{"/a\nb\x1b", `{"path":"/a\nb\u001b"}`},
		{"/caf\xe9", `{"path":"/caf` + "\ufffd" + `","path_bytes":"` + base64.StdEncoding.EncodeToString([]byte("/caf\xe9")) + `"}`},
		{"/\xff\xff", `{"path":"/` + "\ufffd\ufffd" + `","path_bytes":"L///"}`},
	} {
		text, exact := JSON(c.in)
		if IsExactInJSON(c.in) != (exact == nil) {
			t.Errorf("IsExactInJSON(%q) = %v but exact = %v", c.in, IsExactInJSON(c.in), exact)
		}
		if !utf8.ValidString(text) {
			t.Errorf("JSON(%q) text %q is not UTF-8", c.in, text)
		}
		out, err := json.Marshal(rec{text, exact})
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != c.wantJSON {
			t.Errorf("JSON(%q) marshals to %s; want %s", c.in, out, c.wantJSON)
		}
		var r rec
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		got := r.Path
		if r.PathBytes != nil {
			got = string(r.PathBytes)
		}
		if got != c.in {
			t.Errorf("JSON(%q) decodes back as %q", c.in, got)
		}
	}
	// Two distinct invalid names with the same lossy text differ in bytes.
	t1, b1 := JSON("\xfe")
	t2, b2 := JSON("\xff")
	if t1 != t2 || bytes.Equal(b1, b2) {
		t.Errorf("JSON: %q %x vs %q %x", t1, b1, t2, b2)
	}
}

func FuzzName(f *testing.F) {
	for _, s := range []string{"", "plain", "a\nb", "\x1b[31m", `\`, `\x41`, "\xff", "\xc2\x85", "\u2028",
		"\u202e", "caf\xe9", "\xed\xa0\x80", "\xf4\x90\x80\x80", "日本\x00語"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Name(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Name(%q) = %q is not valid UTF-8", s, out)
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; c < 0x20 || c == 0x7f {
				t.Fatalf("Name(%q) = %q holds control byte %#x", s, out, c)
			}
		}
		for _, r := range out {
			if escapedRune(r) {
				t.Fatalf("Name(%q) = %q holds rune %U", s, out, r)
			}
		}
		back, err := Unescape(out)
		if err != nil || back != s {
			t.Fatalf("Unescape(Name(%q)) = %q, %v", s, back, err)
		}
		text, exact := JSON(s)
		if !utf8.ValidString(text) || (exact == nil) != utf8.ValidString(s) || (exact != nil && string(exact) != s) {
			t.Fatalf("JSON(%q) = %q, %q", s, text, exact)
		}
		if exact == nil && text != s {
			t.Fatalf("JSON(%q) text %q not exact", s, text)
		}
	})
}
