package exceptions

import (
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// RiskyPlace says whether path (clean, absolute) lies in one of the
// locations the lint warns about because a change there can run code or
// grant access later: shell start-up files, autostart, service and cron
// locations, SSH, the dynamic loader's configuration, PATH directories,
// accounts, shared libraries. It returns the lint code and a description
// (e.g. "ssh", "SSH keys or configuration"). A home directory's ordinary
// files are not risky places.
func RiskyPlace(path string) (code, what string, ok bool) {
	for _, r := range risks {
		if r.code == CodeWholeHome {
			continue
		}
		for _, loc := range r.locations {
			for _, pat := range expandHome(loc) {
				if m, _ := doublestar.Match(pat, path); m {
					return r.code, r.what, true
				}
				// A location that names a directory's contents also
				// covers the directory itself (a new ~/.ssh).
				if dir, ok := strings.CutSuffix(pat, "/**"); ok {
					if m, _ := doublestar.Match(dir, path); m {
						return r.code, r.what, true
					}
				}
			}
		}
	}
	return "", "", false
}

// expandHome turns a location starting with "~/" into one pattern per
// kind of home directory.
func expandHome(loc string) []string {
	if rest, ok := strings.CutPrefix(loc, "~/"); ok {
		return []string{"/root/" + rest, "/home/*/" + rest}
	}
	return []string{loc}
}
