package persist

import (
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// linkOnPath reports the first component of p that is a symlink in the image
// tree at dir, and where it points, without following anything: patterns
// match paths as they stand in the sandbox's changes, so a pattern through
// an image symlink (e.g. /home -> /var/home) would never match.
func linkOnPath(dir, p string) (link, realPath string, found bool) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", "", false
	}
	defer func() { unix.Close(fd) }()
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, name := range parts {
		if name == "" {
			return "", "", false
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return "", "", false
		}
		cur := "/" + strings.Join(parts[:i+1], "/")
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			buf := make([]byte, 4096)
			n, err := unix.Readlinkat(fd, name, buf)
			if err != nil {
				return "", "", false
			}
			target := string(buf[:n])
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(cur), target)
			}
			rest := strings.Join(parts[i+1:], "/")
			return cur, path.Join(target, rest), true
		case unix.S_IFDIR:
			next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return "", "", false
			}
			unix.Close(fd)
			fd = next
		default:
			return "", "", false
		}
	}
	return "", "", false
}
