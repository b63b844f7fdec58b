package exceptions

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/change"
)

// State returns StateRevoked if e was revoked, else StateExpired if it has
// an expiry that is not after now, else StateActive. A rule expires at the
// instant Expires: from then on it matches nothing.
func (e *Exception) State(now time.Time) string {
	switch {
	case !e.Revoked.IsZero():
		return StateRevoked
	case !e.Expires.IsZero() && !now.Before(e.Expires):
		return StateExpired
	}
	return StateActive
}

// Active reports whether e lets changes through at now.
func (e *Exception) Active(now time.Time) bool { return e.State(now) == StateActive }

// EffectiveLimits returns e's limits with every field that is zero (or,
// which never happens for a validated rule, negative) replaced by the one
// of DefaultLimits.
func (e *Exception) EffectiveLimits() Limits {
	l := e.Limits
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = DefaultLimits.MaxFileSize
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultLimits.MaxFiles
	}
	return l
}

// Validate checks the fields a new rule must have: at least one pattern,
// each valid; a reason that is not blank; a review mode of change.ReviewAfter or change.ReviewBefore (empty
// is taken as change.ReviewAfter); limits not negative. It does not lint.
func (e *Exception) Validate() error {
	if len(e.Patterns) == 0 {
		return errors.New("an exception needs at least one pattern")
	}
	for _, p := range e.Patterns {
		if err := ValidatePattern(p); err != nil {
			return err
		}
	}
	if strings.TrimSpace(e.Reason) == "" {
		return errors.New("an exception needs a reason")
	}
	switch e.Review {
	case "", change.ReviewAfter, change.ReviewBefore:
	default:
		return fmt.Errorf("review mode %q: must be %q or %q", e.Review, change.ReviewAfter, change.ReviewBefore)
	}
	if e.Limits.MaxFileSize < 0 || e.Limits.MaxBytes < 0 || e.Limits.MaxFiles < 0 {
		return errors.New("limits must not be negative")
	}
	return nil
}

// ModeBits returns the permission bits a persisted file keeps of mode:
// setuid, setgid and sticky are always dropped, the execute bits (0o111)
// too unless allowExec, and only the 0o777 bits are returned. It takes a
// Unix st_mode or the low bits of an fs.FileMode alike.
func ModeBits(mode uint32, allowExec bool) uint32 {
	m := mode & 0o777
	if !allowExec {
		m &^= 0o111
	}
	return m
}
