package exceptions

import (
	"reflect"
	"sort"
	"strings"
	"testing"
)

func codes(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Code)
	}
	sort.Strings(out)
	return out
}

func TestLintPatterns(t *testing.T) {
	all := []string{CodeAccounts, CodeAutostart, CodeLDPreload, CodeLibraryDir, CodePathDir, CodeShellStartup, CodeSSH, CodeWholeFS, CodeWholeHome}
	homeAll := []string{CodeAccounts, CodeAutostart, CodePathDir, CodeShellStartup, CodeSSH, CodeWholeHome}
	for _, c := range []struct {
		pattern string
		want    []string // sorted
	}{
		// benign
		{"/home/user/Documents/**", nil},
		{"/home/*/Documents/*.odt", nil},
		{"/home/user/Documents/notes.txt", nil},
		{"/home/*/Documents/**", nil},
		{"/home/user/{Documents,Desktop}/**", nil},
		{"/home/user/*.odt", nil},
		{"/srv/data/**", nil},
		{"/tmp/**", nil},
		{"/etc/hosts", nil},
		{"/etc/cronjob-notes.txt", nil},
		{"/etc/ld.so.conf.bak", nil},
		{"/var/lib/app/**", nil},
		{"/usr/share/doc/**", nil},
		{"/", nil},
		// whole filesystem
		{"/**", all},
		{"/**/*", all},
		{"/*/**", all},
		// whole home
		{"/home/**", homeAll},
		{"/home/*/**", homeAll},
		{"/home/user/**", homeAll},
		{"/root/**", homeAll},
		{"/home/user/*", homeAll}, // ~/.bashrc, the ~/.ssh and ~/bin directories, ~/.xprofile
		{"/home/{alice,bob}/**", homeAll},
		// a home directory itself, or the directory of homes: close could
		// record deleting or replacing it whole
		{"/home", []string{CodeWholeHome}},
		{"/h**", []string{CodeWholeHome}},
		{"/home/user", []string{CodeWholeHome}},
		{"/home/*", []string{CodeWholeHome}},
		{"/root", []string{CodeWholeHome}},
		{"/{srv,home}", []string{CodeWholeHome}},
		// accounts, passwords and privilege rules
		{"/etc/passwd", []string{CodeAccounts}},
		{"/etc/shadow", []string{CodeAccounts}},
		{"/etc/sudoers", []string{CodeAccounts}},
		{"/etc/sudoers.d/*", []string{CodeAccounts}},
		{"/etc/pam.d/*", []string{CodeAccounts}},
		{"/etc/security/**", []string{CodeAccounts}},
		{"/etc/security/limits.conf", []string{CodeAccounts}},
		{"/home/user/.pam_environment", []string{CodeAccounts}},
		{"/etc/{passwd,group}", []string{CodeAccounts}},
		// library directories
		{"/usr/lib/**", []string{CodeAutostart, CodeLibraryDir}}, // /usr/lib/systemd
		{"/usr/lib/x86_64-linux-gnu/libc.so.6", []string{CodeLibraryDir}},
		{"/lib*/**", []string{CodeAutostart, CodeLibraryDir}}, // /lib/systemd
		{"/lib64/ld-linux-x86-64.so.2", []string{CodeLibraryDir}},
		{"/usr/local/lib/python3/dist-packages/x.py", []string{CodeLibraryDir}},
		{"/usr/libexec/x", []string{CodeLibraryDir}},
		{"/usr/share/doc/x/**", nil},
		// shell start-up
		{"/home/user/.bashrc", []string{CodeShellStartup}},
		{"/root/.profile", []string{CodeShellStartup}},
		{"/home/*/.z*", []string{CodeShellStartup}},
		{"/home/user/.config/fish/config.fish", []string{CodeShellStartup}},
		{"/etc/profile", []string{CodeShellStartup}},
		{"/etc/bash.bashrc", []string{CodeShellStartup}},
		{"/etc/environment", []string{CodeShellStartup}},
		{"/etc/skel/**", []string{CodeShellStartup}},
		// autostart
		{"/home/user/.config/autostart/x.desktop", []string{CodeAutostart}},
		{"/home/user/.config/systemd/user/evil.service", []string{CodeAutostart}},
		{"/home/user/.config/**", []string{CodeAutostart, CodeShellStartup}}, // fish too
		{"/etc/systemd/system/x.service", []string{CodeAutostart}},
		{"/etc/init.d/x", []string{CodeAutostart}},
		{"/etc/rc.local", []string{CodeAutostart}},
		{"/etc/profile.d/x.sh", []string{CodeAutostart}},
		{"/etc/crontab", []string{CodeAutostart}},
		{"/etc/cron.d/x", []string{CodeAutostart}},
		{"/etc/cron*", []string{CodeAutostart}},
		{"/etc/rc3.d/S99x", []string{CodeAutostart}},
		{"/etc/cron.daily/**", []string{CodeAutostart}},
		{"/var/spool/cron/crontabs/root", []string{CodeAutostart}},
		{"/etc/xdg/autostart/*.desktop", []string{CodeAutostart}},
		// ssh
		{"/home/user/.ssh/authorized_keys", []string{CodeSSH}},
		{"/root/.ssh/**", []string{CodeSSH}},
		{"/home/*/.ssh", []string{CodeSSH}},
		{"/etc/ssh/sshd_config", []string{CodeSSH}},
		// ld.so
		{"/etc/ld.so.preload", []string{CodeLDPreload}},
		{"/etc/ld.so.conf", []string{CodeLDPreload}},
		{"/etc/ld.so.conf.d/evil.conf", []string{CodeLDPreload}},
		{"/etc/ld.so.*", []string{CodeLDPreload}},
		// PATH directories
		{"/usr/bin/x", []string{CodePathDir}},
		{"/usr/local/bin/**", []string{CodePathDir}},
		{"/bin/sh", []string{CodePathDir}},
		{"/sbin/*", []string{CodePathDir}},
		{"/home/user/.local/bin/tool", []string{CodePathDir}},
		{"/home/user/bin/tool", []string{CodePathDir}},
		{"/usr/**", []string{CodeAutostart, CodeLibraryDir, CodePathDir}}, // /usr/lib/systemd
		// a whole /etc
		{"/etc/**", []string{CodeAccounts, CodeAutostart, CodeLDPreload, CodeShellStartup, CodeSSH}},
		// alternatives are each checked
		{"/{srv/data,etc/ssh}/**", []string{CodeSSH}},
		// wildcards that could reach a risky name
		{"/home/user/**/*.odt", []string{CodeAutostart, CodePathDir, CodeShellStartup, CodeSSH}},
		{"/e?c/*", []string{CodeAccounts, CodeAutostart, CodeLDPreload, CodeShellStartup, CodeSSH}},                                              // the /etc/ssh directory
		{"/[eu]*/**", []string{CodeAccounts, CodeAutostart, CodeLDPreload, CodeLibraryDir, CodePathDir, CodeShellStartup, CodeSSH, CodeWholeFS}}, // spans /etc and /usr
		{"/e*/**", []string{CodeAccounts, CodeAutostart, CodeLDPreload, CodeShellStartup, CodeSSH}},
		{"/*.txt", nil},
		{"/*", []string{CodeLibraryDir, CodePathDir, CodeWholeFS, CodeWholeHome}}, // the /bin, /lib and /home directories themselves
		// an escaped wildcard is literal
		{`/home/user/\*`, nil},
	} {
		fs := LintPatterns([]string{c.pattern}, false, false)
		got := codes(fs)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("LintPatterns(%q) = %q; want %q\n%v", c.pattern, got, c.want, fs)
		}
		for _, f := range fs {
			if f.Pattern != c.pattern || f.Message == "" {
				t.Errorf("finding %+v: want pattern %q and a message", f, c.pattern)
			}
			if strings.Contains(f.Message, "\x01") || strings.Contains(f.Message, "probe") {
				t.Errorf("finding %+v leaks the probe", f)
			}
		}
	}
}

func TestLintMessagesAndOrder(t *testing.T) {
	e := &Exception{
		Patterns:      []string{"/home/user/Documents/**", "/home/user/.bashrc", "rel", "/usr/bin/x"},
		AllowExec:     true,
		AllowSymlinks: true,
	}
	got := Lint(e)
	want := []Finding{
		{"/home/user/.bashrc", CodeShellStartup, "could let through a shell start-up file (~/.bashrc)"},
		{"rel", CodeInvalidPattern, `pattern "rel": must be an absolute path inside the sandbox (start with /)`},
		{"/usr/bin/x", CodePathDir, "could let through a program in a PATH directory (/usr/bin/**)"},
		{"", CodeAllowsExec, "keeps execute bits: files it lets through can be run at the next open"},
		{"", CodeAllowsSymlinks, "persists symlinks: a link it lets through can redirect what the next open reads or writes"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Lint =\n%q\nwant\n%q", got, want)
	}
	fs := LintPatterns([]string{"/root/**"}, false, false)
	if fs[0].Code != CodeWholeHome || fs[0].Message != "matches everything in a home directory (~)" {
		t.Errorf("whole-home finding: %+v", fs[0])
	}
	fs = LintPatterns([]string{"/**"}, false, false)
	if fs[0].Code != CodeWholeFS || fs[0].Message != "matches paths anywhere in the filesystem" {
		t.Errorf("whole-filesystem finding: %+v", fs[0])
	}
	if fs := LintPatterns([]string{"/docs/**"}, false, false); fs != nil {
		t.Errorf("benign: %+v", fs)
	}
}

func TestOverlap(t *testing.T) {
	for _, c := range []struct {
		u, r string
		want bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/b", "/a/c", false},
		{"/a/*", "/a/b", true},
		{"/a/b", "/a/*", true},
		{"/a/**", "/a", true},
		{"/a", "/a/**", true},
		{"/a/**/z", "/a/b/c/z", true},
		{"/a/**/z", "/a/b/c/y", false},
		{"/**", "/x/y/z", true},
		{"/a/*.odt", "/a/cron*", true}, // cron.odt
		{"/a/x*", "/a/y*", false},
		{"/a/*.odt", "/a/*.txt", false},
		{"/a/[ab]*", "/a/b*", true}, // unsure: assumed to overlap
		{`/a/\*`, "/a/b", false},
		{`/a/\*`, "/a/*", true},
		{"/a/b/c", "/a/b", false},
		{"/a/b", "/a/b/c", false},
	} {
		if got := overlap(split(c.u), split(c.r)); got != c.want {
			t.Errorf("overlap(%q, %q) = %v; want %v", c.u, c.r, got, c.want)
		}
	}
}

// TestSuggestAtomicForGit checks that lint suggests --atomic for a rule
// over .git directories, only as advice, and not once the rule has it.
func TestSuggestAtomicForGit(t *testing.T) {
	for _, c := range []struct {
		patterns []string
		atomic   bool
		want     bool
	}{
		{[]string{"/home/user/src/*/.git/**"}, false, true},
		{[]string{"/home/user/repo.git/**"}, false, true},
		{[]string{"/home/user/src/*/.git/**"}, true, false},
		{[]string{"/home/user/Documents/**"}, false, false},
		{[]string{"/home/user/src/.gitignore"}, false, false},
	} {
		x := &Exception{Patterns: c.patterns, Atomic: c.atomic}
		got := Suggest(x)
		if (len(got) > 0) != c.want {
			t.Errorf("Suggest(%v, atomic=%v) = %v, want a suggestion: %v", c.patterns, c.atomic, got, c.want)
		}
		if len(got) > 0 && got[0].Code != CodeSuggestAtomic {
			t.Errorf("code %q", got[0].Code)
		}
		for _, f := range Lint(x) {
			if f.Code == CodeSuggestAtomic {
				t.Errorf("Lint, which refuses rules, returned the suggestion for %v", c.patterns)
			}
		}
	}
}
