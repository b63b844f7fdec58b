package exceptions

import "testing"

func TestRiskyPlace(t *testing.T) {
	for path, want := range map[string]string{
		"/home/user/.bashrc":                      CodeShellStartup,
		"/root/.profile":                          CodeShellStartup,
		"/home/user/.config/autostart/x.desktop":  CodeAutostart,
		"/etc/cron.d/job":                         CodeAutostart,
		"/var/spool/cron/crontabs/user":           CodeAutostart,
		"/home/user/.ssh":                         CodeSSH,
		"/home/user/.ssh/authorized_keys":         CodeSSH,
		"/etc/ld.so.preload":                      CodeLDPreload,
		"/usr/local/bin/ls":                       CodePathDir,
		"/home/user/.local/bin/git":               CodePathDir,
		"/etc/sudoers.d/me":                       CodeAccounts,
		"/usr/lib/x86_64-linux-gnu/libc.so.6":     CodeLibraryDir,
		"/home/user/Documents/letter.txt":         "",
		"/home/user/.bashrc.d.txt":                "",
		"/tmp/x":                                  "",
		"/home/user/Documents/.ssh/not-a-key.txt": "",
	} {
		code, what, ok := RiskyPlace(path)
		if code != want || ok != (want != "") || ok && what == "" {
			t.Errorf("RiskyPlace(%q) = %q, %q, %v; want %q", path, code, what, ok, want)
		}
	}
}
