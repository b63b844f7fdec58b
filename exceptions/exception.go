package exceptions

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/change"
)

// States of an exception, as shown by `exception ls`.
const (
	StateActive  = "active"
	StateRevoked = "revoked"
	StateExpired = "expired"
)

// Limits bound what one exception lets through in one session.
type Limits struct {
	MaxFileSize int64 `json:"max_file_size"` // bytes per file
	MaxBytes    int64 `json:"max_bytes"`     // bytes per session
	MaxFiles    int64 `json:"max_files"`     // files per session
}

// DefaultLimits are the limits of an exception that sets none.
var DefaultLimits = Limits{MaxFileSize: 256 << 20, MaxBytes: 1 << 30, MaxFiles: 10000}

// IDNumber is the number of a rule's ID: 3 for "ex3". Rules are listed
// by it, and a store draws it from a sequence.
func IDNumber(id string) (uint64, error) {
	s, ok := strings.CutPrefix(id, "ex")
	if ok && s != "" && s[0] != '0' {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("bad exception id %q (want ex1, ex2, …)", id)
}

// Exception is a persistence rule of one sandbox. It is never edited or
// deleted: only revoked (Revoked set) or expired (Expires passed).
type Exception struct {
	ID            string            // "ex1", "ex2", … unique per store
	Sandbox       string            // the sandbox the rule belongs to
	Patterns      []string          // absolute, clean doublestar patterns
	Reason        string            // required, why the rule exists
	Created       time.Time         // when it was added
	CreatedBy     string            // OS user that added it
	Expires       time.Time         // zero: never
	Review        change.ReviewMode // change.ReviewAfter or change.ReviewBefore
	AllowExec     bool              // keep execute bits
	AllowSymlinks bool              // persist symlinks as links
	Forced        bool              // added with --force despite lint findings
	Atomic        bool              // a session persists all its changes or none
	Limits        Limits
	Revoked       time.Time // zero: not revoked
	RevokedBy     string
	RevokeReason  string
}
