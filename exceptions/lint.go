package exceptions

import (
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// Lint finding codes.
const (
	CodeInvalidPattern = "invalid-pattern" // the pattern does not validate
	CodeWholeFS        = "whole-filesystem"
	CodeWholeHome      = "whole-home"
	CodeShellStartup   = "shell-startup"
	CodeAutostart      = "autostart"
	CodeSSH            = "ssh"
	CodeLDPreload      = "ld-preload"
	CodePathDir        = "path-dir"
	CodeAccounts       = "accounts"
	CodeLibraryDir     = "library-dir"
	CodeAllowsExec     = "allows-exec"
	CodeAllowsSymlinks = "allows-symlinks"
	CodeSuggestAtomic  = "suggest-atomic" // advice only: never refuses a rule
)

// A Finding is one risk of a rule. Pattern is the pattern at fault, or ""
// when the finding is about the whole rule (allows-exec, allows-symlinks).
type Finding struct {
	Pattern string `json:"pattern"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// A risk is a family of risky locations; "~" in a location stands for every
// home directory (/root and /home/*).
type risk struct {
	code      string
	what      string
	locations []string
}

// probe is a name no sane pattern spells out: a pattern that can match
// ~/probe covers every name in a home directory.
const probe = ".spillway-lint-probe\x01"

var risks = []risk{
	{CodeWholeHome, "everything in a home directory", []string{"~/" + probe}},
	{CodeShellStartup, "a shell start-up file", []string{
		"~/.bashrc", "~/.bash_profile", "~/.bash_login", "~/.bash_logout", "~/.profile",
		"~/.zshrc", "~/.zprofile", "~/.zshenv", "~/.zlogin", "~/.zlogout",
		"~/.login", "~/.logout", "~/.cshrc", "~/.tcshrc", "~/.kshrc", "~/.mkshrc",
		"~/.config/fish/**",
		"/etc/profile", "/etc/bash.bashrc", "/etc/bashrc", "/etc/environment",
		"/etc/zsh/**", "/etc/zshrc", "/etc/zshenv", "/etc/zprofile", "/etc/zlogin",
		"/etc/csh.cshrc", "/etc/csh.login", "/etc/fish/**", "/etc/skel/**",
	}},
	{CodeAutostart, "an autostart or service location", []string{
		"~/.config/autostart/**", "~/.config/systemd/**", "~/.config/environment.d/**",
		"~/.local/share/systemd/**", "~/.xprofile", "~/.xinitrc", "~/.xsession", "~/.xsessionrc",
		"/etc/systemd/**", "/lib/systemd/**", "/usr/lib/systemd/**",
		"/etc/init.d/**", "/etc/init/**", "/etc/rc.local", "/etc/rc.d/**", "/etc/rc?.d/**",
		"/etc/profile.d/**", "/etc/xdg/autostart/**",
		"/etc/crontab", "/etc/cron.*/**", "/etc/anacrontab", "/var/spool/cron/**", "/var/spool/anacron/**",
	}},
	{CodeSSH, "SSH keys or configuration", []string{"~/.ssh/**", "/etc/ssh/**"}},
	{CodeLDPreload, "the dynamic loader's configuration", []string{
		"/etc/ld.so.preload", "/etc/ld.so.conf", "/etc/ld.so.conf.d/**", "/etc/ld.so.cache",
	}},
	{CodePathDir, "a program in a PATH directory", []string{
		"/bin/**", "/sbin/**", "/usr/bin/**", "/usr/sbin/**",
		"/usr/local/bin/**", "/usr/local/sbin/**", "~/.local/bin/**", "~/bin/**",
	}},
	{CodeAccounts, "accounts, passwords or privilege rules", []string{
		"/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/subuid", "/etc/subgid",
		"/etc/sudoers", "/etc/sudoers.d/**", "/etc/doas.conf", "/etc/pam.conf", "/etc/pam.d/**",
		"/etc/security/**", "/etc/login.defs", "/etc/nsswitch.conf", "/etc/polkit-1/**",
		"~/.pam_environment",
	}},
	{CodeLibraryDir, "a shared library or a program's own code", []string{
		"/lib/**", "/lib32/**", "/lib64/**", "/libx32/**", "/usr/lib/**", "/usr/lib32/**",
		"/usr/lib64/**", "/usr/libx32/**", "/usr/libexec/**", "/usr/local/lib/**",
	}},
}

// homeDirs are the home directories themselves and the directory above
// them: a pattern that matches one of them lets close record deleting or
// replacing a whole home (or all of them) at once.
var homeDirs = [][]string{split("/home"), split("/home/*"), split("/root")}

// compiled risky locations: for each risk, each location as element lists
// (one per home when it starts with "~").
type compiledLocation struct {
	label string // as written in the table, for messages
	segs  [][]string
}

var compiledRisks = func() [][]compiledLocation {
	out := make([][]compiledLocation, len(risks))
	for i, r := range risks {
		for _, loc := range r.locations {
			c := compiledLocation{label: loc}
			if rest, ok := strings.CutPrefix(loc, "~/"); ok {
				c.segs = [][]string{split("/root/" + rest), split("/home/*/" + rest)}
			} else {
				c.segs = [][]string{split(loc)}
			}
			out[i] = append(out[i], c)
		}
	}
	return out
}()

// topLevel are the usual top-level directories; a first element that can
// match two of them spans the whole filesystem.
var topLevel = []string{"bin", "boot", "etc", "home", "lib", "opt", "root", "srv", "usr", "var"}

// split returns the elements of an absolute brace-free pattern.
func split(p string) []string {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// Lint returns the findings of a rule: those of its patterns, then
// allows-exec and allows-symlinks.
func Lint(e *Exception) []Finding {
	return LintPatterns(e.Patterns, e.AllowExec, e.AllowSymlinks)
}

// LintPatterns returns the findings of a set of patterns and options, in
// the order of the patterns and, for each, of the codes above. A pattern
// that does not validate gets only an invalid-pattern finding.
func LintPatterns(patterns []string, allowExec, allowSymlinks bool) []Finding {
	var out []Finding
	for _, p := range patterns {
		out = append(out, lintPattern(p)...)
	}
	if allowExec {
		out = append(out, Finding{Code: CodeAllowsExec,
			Message: "keeps execute bits: files it lets through can be run at the next open"})
	}
	if allowSymlinks {
		out = append(out, Finding{Code: CodeAllowsSymlinks,
			Message: "persists symlinks: a link it lets through can redirect what the next open reads or writes"})
	}
	return out
}

func lintPattern(p string) []Finding {
	if err := ValidatePattern(p); err != nil {
		return []Finding{{Pattern: p, Code: CodeInvalidPattern, Message: err.Error()}}
	}
	alts, _ := expand(p, MaxAlternatives)
	var out []Finding
	for _, a := range alts {
		if first := split(a); len(first) > 0 && spansTopLevel(first[0]) {
			out = append(out, Finding{Pattern: p, Code: CodeWholeFS, Message: "matches paths anywhere in the filesystem"})
			break
		}
	}
	for i, r := range risks {
		label, ok := firstOverlap(alts, compiledRisks[i])
		if !ok && r.code == CodeWholeHome && coversHomeDir(alts) {
			out = append(out, Finding{Pattern: p, Code: r.code, Message: "can delete or replace a whole home directory, or all of them"})
			continue
		}
		if ok {
			msg := "could let through " + r.what + " (" + label + ")"
			if r.code == CodeWholeHome {
				msg = "matches everything in a home directory (" + strings.TrimSuffix(label, "/"+probe) + ")"
			}
			out = append(out, Finding{Pattern: p, Code: r.code, Message: msg})
		}
	}
	return out
}

// coversHomeDir reports whether some alternative can match a home
// directory itself or the directory that holds the homes.
func coversHomeDir(alts []string) bool {
	for _, a := range alts {
		for _, h := range homeDirs {
			if overlap(split(a), h) {
				return true
			}
		}
	}
	return false
}

func spansTopLevel(seg string) bool {
	if seg == "**" {
		return true
	}
	if !hasMeta(seg) {
		return false
	}
	n := 0
	for _, t := range topLevel {
		if ok, _ := doublestar.Match(seg, t); ok {
			n++
		}
	}
	return n >= 2
}

// firstOverlap returns the label of the first location that some
// alternative could match.
func firstOverlap(alts []string, locs []compiledLocation) (string, bool) {
	for _, loc := range locs {
		for _, segs := range loc.segs {
			for _, a := range alts {
				if overlap(split(a), segs) {
					return loc.label, true
				}
			}
		}
	}
	return "", false
}

// overlap reports whether some path could match both element lists u and
// r (brace-free; "**" any number of elements). It may say yes when the
// answer is no (see segOverlap), never the reverse.
func overlap(u, r []string) bool {
	type key struct{ i, j int }
	memo := map[key]bool{}
	var f func(i, j int) bool
	f = func(i, j int) bool {
		k := key{i, j}
		if v, ok := memo[k]; ok {
			return v
		}
		var res bool
		switch {
		case i == len(u) && j == len(r):
			res = true
		case i < len(u) && u[i] == "**":
			res = f(i+1, j) || (j < len(r) && f(i, j+1))
		case j < len(r) && r[j] == "**":
			res = f(i, j+1) || (i < len(u) && f(i+1, j))
		case i == len(u) || j == len(r):
			res = false
		default:
			res = segOverlap(u[i], r[j]) && f(i+1, j+1)
		}
		memo[k] = res
		return res
	}
	return f(0, 0)
}

// segOverlap reports whether some name could match both elements a and b.
// Exact when either is literal; for two wildcard elements it only checks
// that their literal prefixes and suffixes agree.
func segOverlap(a, b string) bool {
	am, bm := hasMeta(a), hasMeta(b)
	switch {
	case !am && !bm:
		return unescape(a) == unescape(b)
	case am && !bm:
		ok, _ := doublestar.Match(a, unescape(b))
		return ok
	case !am && bm:
		ok, _ := doublestar.Match(b, unescape(a))
		return ok
	}
	ap, as := literalEnds(a)
	bp, bs := literalEnds(b)
	return (strings.HasPrefix(ap, bp) || strings.HasPrefix(bp, ap)) &&
		(strings.HasSuffix(as, bs) || strings.HasSuffix(bs, as))
}

// literalEnds returns the literal text before the first and after the last
// wildcard of a brace-free element, escapes removed.
func literalEnds(s string) (prefix, suffix string) {
	first, afterLast := -1, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '*', '?':
			if first < 0 {
				first = i
			}
			afterLast = i + 1
		case '[':
			if first < 0 {
				first = i
			}
			i = skipClass(s, i)
			afterLast = i + 1
		}
	}
	if first < 0 {
		return unescape(s), unescape(s)
	}
	return unescape(s[:first]), unescape(s[min(afterLast, len(s)):])
}

// Suggest returns advice that is no risk, so never refuses a rule: a rule
// over a .git directory that is not --atomic could persist half a
// repository when a pack file is refused.
func Suggest(e *Exception) []Finding {
	if e.Atomic {
		return nil
	}
	for _, p := range e.Patterns {
		for _, seg := range split(p) {
			if strings.Contains(seg, ".git") && !strings.Contains(seg, ".gitignore") {
				return []Finding{{Pattern: p, Code: CodeSuggestAtomic,
					Message: "covers a .git directory: add it with --atomic so that a session persists the repository whole or not at all"}}
			}
		}
	}
	return nil
}
