// Package whoami names the user that records and audit entries are attributed to.
package whoami

import (
	"os"
	"os/user"
	"strconv"
	"sync"
)

// Name returns the current user's name, or the numeric uid as a string when
// the name cannot be looked up. SUDO_USER is deliberately ignored: it is an
// environment variable anyone can set, so the effective uid is what is recorded.
var Name = sync.OnceValue(func() string { return name(os.Getuid()) })

func name(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return u.Username
	}
	return strconv.Itoa(uid)
}
