// Package sandboxpath holds the one test for a clean path inside a sandbox.
package sandboxpath

import (
	"path"
	"strings"
)

// IsClean reports whether p is a clean absolute slash path without NUL.
// "/" is clean; callers that need a path below the root also reject "/".
func IsClean(p string) bool {
	return strings.HasPrefix(p, "/") && strings.IndexByte(p, 0) < 0 && path.Clean(p) == p
}
