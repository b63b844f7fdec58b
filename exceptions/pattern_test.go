package exceptions

import (
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
)

func TestValidatePatternAccepts(t *testing.T) {
	for _, p := range []string{
		"/",
		"/docs",
		"/home/user/Documents/**",
		"/home/*/Documents/*.odt",
		"/home/user/{Documents,Desktop/notes}/**",
		"/a/**/b",
		"/a/[abc]?/x",
		"/a/[!.]*",
		`/a/\*literal\?`,
		"/a/.hidden",
		"/a/..b",
		"/a/b.",
		"/a/new\nline",
		"/Ünï/文件",
		"/a/{b,{c,d}}/e",
		"/a/[{]x", // a brace inside a class is literal
	} {
		if err := ValidatePattern(p); err != nil {
			t.Errorf("ValidatePattern(%q) = %v; want nil", p, err)
		}
	}
}

func TestValidatePatternRefuses(t *testing.T) {
	many := "/x/" + strings.Repeat("{a,b}", 11) // 2048 combinations
	for _, c := range []struct{ in, want string }{
		{"", `pattern "": must be an absolute path inside the sandbox (start with /)`},
		{"docs/*", `pattern "docs/*": must be an absolute path inside the sandbox (start with /)`},
		{"*/x", "start with /"},
		{"{/a,/b}", "start with /"},
		{"/a\x00b", "must not contain a NUL byte"},
		{"/caf\xe9", "must be valid UTF-8"},
		{"/a/\ufffd", "must not contain U+FFFD"},
		{"/" + strings.Repeat("a", MaxPatternLen), "is too long"},
		{"/a//b", "no empty path element (//)"},
		{"/a/", "must not end with /"},
		{"//", "must not end with /"},
		{"/a/./b", "no . or .. element"},
		{"/a/../b", "no . or .. element"},
		{"/..", "no . or .. element"},
		{"/a/.", "no . or .. element"},
		{`/a/\./b`, "no . or .. element"},
		{"/a/{..,b}/c", `no . or .. element (in the alternative "/a/../c")`},
		{"/a/{,b}/c", `no empty path element (//) (in the alternative "/a//c")`},
		{"/a{,/}", "must not end with /"},
		{"/a/[b", "has a [ without its ]"},
		{"/a/[]", "has an empty [] class"},
		{"/a/{b,c", "has a { without its }"},
		{"/a/b}", "has a } without its {"},
		{`/a/b\`, `ends with a lone \`},
		{`/a\/b`, "a backslash cannot escape /"},
		{"/a/[x/y]", "cannot hold /"},
		{many, "too many {…} alternatives"},
	} {
		err := ValidatePattern(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ValidatePattern(%q) = %v; want it to contain %q", c.in, err, c.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "pattern ") {
			t.Errorf("ValidatePattern(%q) = %v; want it to name the pattern", c.in, err)
		}
	}
	if err := ValidatePattern("/x/" + strings.Repeat("{a,b}", 10)); err != nil { // 1024: the most
		t.Errorf("1024 combinations: %v", err)
	}
}

func TestExpand(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"/a", []string{"/a"}},
		{"/{a,b}", []string{"/a", "/b"}},
		{"/{a,b/c}/d", []string{"/a/d", "/b/c/d"}},
		{"/{a,{b,c}}{x,y}", []string{"/ax", "/ay", "/bx", "/by", "/cx", "/cy"}},
		{`/\{a,b}`, []string{`/\{a,b}`}},
		{"/[{]{a,b}", []string{"/[{]a", "/[{]b"}},
		{"/{[,]x,y}", []string{"/[,]x", "/y"}},
	} {
		got, ok := expand(c.in, MaxAlternatives)
		if !ok || strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("expand(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
	if _, ok := expand("/{a,b}{c,d}", 3); ok {
		t.Error("expand over the limit succeeded")
	}
}

func TestFixedPrefix(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/", "/"},
		{"/*", "/"},
		{"/**", "/"},
		{"/etc/passwd", "/etc/passwd"},
		{"/home/*/Documents", "/home"},
		{"/home/user/Documents/*.odt", "/home/user/Documents"},
		{"/home/user/{a,b}/x", "/home/user"},
		{`/a/\*b/c?`, "/a/*b"},
		{"relative", ""},
	} {
		if got := FixedPrefix(c.in); got != c.want {
			t.Errorf("FixedPrefix(%q) = %q; want %q", c.in, got, c.want)
		}
	}
}

func TestMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"/home/user/Documents/**", "/home/user/Documents/a.odt", true},
		{"/home/user/Documents/**", "/home/user/Documents/x/y/z.odt", true},
		{"/home/user/Documents/**", "/home/user/Documents", true}, // the directory itself
		{"/home/user/Documents/**", "/home/user/Documents2/a", false},
		{"/home/user/Documents/**", "/home/user/.bashrc", false},
		{"/home/user/Documents/**", "/home/user", false},
		{"/home/*/Documents/*.odt", "/home/bob/Documents/cv.odt", true},
		{"/home/*/Documents/*.odt", "/home/bob/Documents/sub/cv.odt", false},
		{"/home/*/Documents/*.odt", "/home/bob/Documents/cv.odt.sh", false},
		{"/d/*", "/d/.profile", true}, // wildcards match hidden names
		{"/a/**/b", "/a/b", true},
		{"/a/**/b", "/a/x/y/b", true},
		{"/{a,b/c}/d", "/b/c/d", true},
		{"/{a,b/c}/d", "/b/d", false},
		{"/a/[!x]", "/a/y", true},
		{"/a/[!x]", "/a/x", false},
		{"/a/?", "/a/\xff", true}, // one invalid byte is one character
		{"/a/*", "/a/caf\xe9", true},
		// names hold any byte but NUL and /: matched literally
		{"/a/*", "/a/new\nline", true},
		{"/a/x\ny", "/a/x\ny", true},
		{"/a/*", "/a/*", true},
		{`/a/\*`, "/a/*", true},
		{`/a/\*`, "/a/b", false},
		{"/a/b", "/a/*", false},
		{"/a/b", "/a/?", false},
		{"/a/{b,c}", "/a/{b,c}", false},
		{"/a/[b]", "/a/[b]", false},
		{"/a/x*", "/a/x[", true},
		// paths that are not clean and absolute never match
		{"/a/**", "/a/../etc/passwd", false},
		{"/a/**", "/a/./b", false},
		{"/a/**", "/a//b", false},
		{"/a/**", "/a/b/", false},
		{"/a/**", "a/b", false},
		{"/a/**", "/a/b\x00", false},
		{"/**", "", false},
		// a bad stored pattern matches nothing rather than failing
		{"/a/[b", "/a/[b", false},
	} {
		e := &Exception{Patterns: []string{c.pattern}}
		if got := e.Matches(c.path); got != c.want {
			t.Errorf("%q matches %q = %v; want %v", c.pattern, c.path, got, c.want)
		}
	}
	e := &Exception{Patterns: []string{"/x/**", "/y/*.odt"}}
	if !e.Matches("/y/a.odt") || !e.Matches("/x/q") || e.Matches("/z") {
		t.Error("a rule matches when any of its patterns does")
	}
	var nilRule *Exception
	if nilRule.Matches("/x") {
		t.Error("nil rule matched")
	}
}

func TestStateAndMatch(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	active := &Exception{ID: "ex1", Patterns: []string{"/docs/**"}}
	expired := &Exception{ID: "ex2", Patterns: []string{"/docs/**", "/tmp/**"}, Expires: now}
	future := &Exception{ID: "ex3", Patterns: []string{"/tmp/**"}, Expires: now.Add(time.Second)}
	revoked := &Exception{ID: "ex4", Patterns: []string{"/etc/**"}, Revoked: now.Add(-time.Hour)}
	revokedExpired := &Exception{ID: "ex5", Expires: now.Add(-time.Hour), Revoked: now.Add(-time.Hour)}
	for _, c := range []struct {
		e    *Exception
		want string
	}{
		{active, StateActive},
		{expired, StateExpired}, // expires at the instant
		{future, StateActive},
		{revoked, StateRevoked},
		{revokedExpired, StateRevoked},
	} {
		if got := c.e.State(now); got != c.want {
			t.Errorf("%s.State = %q; want %q", c.e.ID, got, c.want)
		}
		if got := c.e.Active(now); got != (c.want == StateActive) {
			t.Errorf("%s.Active = %v", c.e.ID, got)
		}
	}
	if got := future.State(now.Add(time.Second)); got != StateExpired {
		t.Errorf("future later: %q", got)
	}

	rules := []*Exception{nil, expired, revoked, active, future}
	for _, c := range []struct {
		path, want string
	}{
		{"/docs/a", "ex1"}, // ex2 is first but expired
		{"/tmp/a", "ex3"},
		{"/etc/passwd", ""}, // only the revoked rule matches
		{"/other", ""},
	} {
		got := Match(rules, c.path, now)
		id := ""
		if got != nil {
			id = got.ID
		}
		if id != c.want {
			t.Errorf("Match(%q) = %q; want %q", c.path, id, c.want)
		}
	}
	// order decides between two active rules
	a := &Exception{ID: "a", Patterns: []string{"/d/**"}}
	b := &Exception{ID: "b", Patterns: []string{"/d/*.odt"}}
	if got := Match([]*Exception{b, a}, "/d/x.odt", now); got != b {
		t.Errorf("Match = %v; want b", got)
	}
	if got := Match([]*Exception{a, b}, "/d/x.odt", now); got != a {
		t.Errorf("Match = %v; want a", got)
	}
}

func TestEffectiveLimits(t *testing.T) {
	for _, c := range []struct {
		in, want Limits
	}{
		{Limits{}, DefaultLimits},
		{Limits{MaxFileSize: 1}, Limits{1, DefaultLimits.MaxBytes, DefaultLimits.MaxFiles}},
		{Limits{MaxBytes: 2, MaxFiles: 3}, Limits{DefaultLimits.MaxFileSize, 2, 3}},
		{Limits{MaxFileSize: -1, MaxBytes: 5, MaxFiles: -7}, Limits{DefaultLimits.MaxFileSize, 5, DefaultLimits.MaxFiles}},
	} {
		e := &Exception{Limits: c.in}
		if got := e.EffectiveLimits(); got != c.want {
			t.Errorf("EffectiveLimits(%+v) = %+v; want %+v", c.in, got, c.want)
		}
		if e.Limits != c.in {
			t.Error("EffectiveLimits changed the rule")
		}
	}
	if DefaultLimits != (Limits{256 << 20, 1 << 30, 10000}) {
		t.Errorf("DefaultLimits = %+v; SPEC says 256 MiB, 1 GiB, 10,000 files", DefaultLimits)
	}
}

func TestValidate(t *testing.T) {
	good := Exception{Patterns: []string{"/docs/**"}, Reason: "keep docs", Review: change.ReviewBefore}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mod  func(*Exception)
		want string
	}{
		{func(e *Exception) { e.Patterns = nil }, "at least one pattern"},
		{func(e *Exception) { e.Patterns = []string{"/ok", "rel"} }, `pattern "rel"`},
		{func(e *Exception) { e.Reason = "" }, "needs a reason"},
		{func(e *Exception) { e.Reason = " \t" }, "needs a reason"},
		{func(e *Exception) { e.Review = "later" }, `review mode "later"`},
		{func(e *Exception) { e.Limits.MaxFiles = -1 }, "negative"},
	} {
		e := good
		c.mod(&e)
		if err := e.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate = %v; want %q", err, c.want)
		}
	}
}

func TestModeBits(t *testing.T) {
	for _, c := range []struct {
		mode      uint32
		allowExec bool
		want      uint32
	}{
		{0o644, false, 0o644},
		{0o755, false, 0o644},
		{0o755, true, 0o755},
		{0o4755, true, 0o755},                        // setuid
		{0o2755, true, 0o755},                        // setgid
		{0o1777, true, 0o777},                        // sticky
		{0o7777, false, 0o666},                       // everything
		{0o100755, true, 0o755},                      // S_IFREG from st_mode
		{1<<23 | 1<<22 | 1<<20 | 0o750, true, 0o750}, // fs.ModeSetuid|ModeSetgid|ModeSticky
		{0o111, false, 0},
		{0, true, 0},
	} {
		if got := ModeBits(c.mode, c.allowExec); got != c.want {
			t.Errorf("ModeBits(%#o, %v) = %#o; want %#o", c.mode, c.allowExec, got, c.want)
		}
	}
}

func FuzzValidatePattern(f *testing.F) {
	for _, s := range []string{"/", "/a/**", "/home/*/Documents/*.odt", "/{a,b/c}/d", "/a/[!x]?",
		`/a/\*`, "/a//b", "/a/../b", "docs", "/a/[b", "/a/{b", "/a/b}", `/a\`, `/a\/b`, "/[x/y]",
		"/{,}", "/{a,{b,}}/", "/a/\x00", "/\xff", "/[{]{a,b}", "/**/**/x"} {
		f.Add(s, "/a/b")
	}
	f.Fuzz(func(t *testing.T, p, name string) {
		err := ValidatePattern(p)
		FixedPrefix(p)
		LintPatterns([]string{p}, false, false)
		e := &Exception{Patterns: []string{p}}
		got := e.Matches(name)
		if err != nil {
			return
		}
		if got && !IsCleanPath(name) {
			t.Fatalf("%q matched unclean path %q", p, name)
		}
		// A valid pattern's alternatives are all clean absolute paths, and
		// its fixed prefix is a clean path that every match lies in.
		alts, ok := expand(p, MaxAlternatives)
		if !ok {
			t.Fatalf("valid %q does not expand", p)
		}
		for _, a := range alts {
			if !IsCleanPath(unescape(a)) {
				t.Fatalf("valid %q has unclean alternative %q", p, a)
			}
		}
		fp := FixedPrefix(p)
		if !IsCleanPath(fp) {
			t.Fatalf("FixedPrefix(%q) = %q", p, fp)
		}
		if got && fp != "/" && name != fp && !strings.HasPrefix(name, fp+"/") {
			t.Fatalf("%q matched %q outside its fixed prefix %q", p, name, fp)
		}
	})
}
