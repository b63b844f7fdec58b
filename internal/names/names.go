// Package names holds the rule for image and sandbox names, shared by the
// commands that create them and the store that reads them back.
package names

import (
	"regexp"
	"sync"
)

// re is compiled at its first use: at package initialisation it cost
// every command about 1 ms (the repetition compiles to 62 copies).
var re = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`) })

// Valid says whether name is a valid image or sandbox name: letters,
// digits, '.', '_' and '-', up to 63, starting with a letter or digit. Such
// a name is one path component, never "." or "..", so it may name a
// directory or a snapshot key.
func Valid(name string) bool { return re().MatchString(name) }
