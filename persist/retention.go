package persist

import (
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/store"
)

// Retention is how long a sandbox's recovery area keeps what close did
// not persist (see SPEC.md, "Recovery").
type Retention = store.Retention

// DefaultRetention is the retention of a sandbox that sets none: refused
// content 7 days, discarded content 24 hours (last session only), the
// newest 7 sessions.
var DefaultRetention = Retention{KeepRefused: 7 * 24 * time.Hour, KeepDiscarded: 24 * time.Hour, KeepSessions: 7}

// RetentionChange changes some of a sandbox's settings; nil fields stay.
type RetentionChange struct {
	KeepRefused   *time.Duration
	KeepDiscarded *time.Duration
	KeepSessions  *int
}

// metaKeepBytes is the store's meta key of the root-wide byte cap.
const metaKeepBytes = "recovery.keep-bytes"

// retentionOf returns sb's settings (the defaults when it has none).
func retentionOf(sb *store.Sandbox) Retention {
	if sb.Retention == nil {
		return DefaultRetention
	}
	return *sb.Retention
}

// keepsNothing says whether r keeps no content at all.
func keepsNothing(r Retention) bool {
	return r.KeepSessions <= 0 || (r.KeepRefused <= 0 && r.KeepDiscarded <= 0)
}

// apply returns r with c's changes.
func (c RetentionChange) apply(r Retention) (Retention, error) {
	if c.KeepRefused != nil {
		r.KeepRefused = *c.KeepRefused
	}
	if c.KeepDiscarded != nil {
		r.KeepDiscarded = *c.KeepDiscarded
	}
	if c.KeepSessions != nil {
		r.KeepSessions = *c.KeepSessions
	}
	if r.KeepRefused < 0 || r.KeepDiscarded < 0 || r.KeepSessions < 0 {
		return r, invalidf("retention must not be negative")
	}
	return r, nil
}

// Settings are a sandbox's recovery settings and the root-wide cap.
type Settings struct {
	Sandbox       string `json:"sandbox,omitempty"`
	KeepRefused   string `json:"keep_refused,omitempty"`
	KeepDiscarded string `json:"keep_discarded,omitempty"`
	KeepSessions  *int   `json:"keep_sessions,omitempty"`
	KeepBytes     int64  `json:"keep_bytes"`
	// KeepBytesDefault says KeepBytes is the default (10% of the
	// filesystem) rather than set.
	KeepBytesDefault bool  `json:"keep_bytes_default"`
	RecoveryBytes    int64 `json:"recovery_bytes"` // what the area holds now, root-wide
	// RecoveryDiskBytes is what that takes on disk, as the cap counts it
	// (a sparse file's holes are free).
	RecoveryDiskBytes int64 `json:"recovery_disk_bytes"`
}

// FormatDuration prints d the way --keep-* flags accept it: whole days
// from two days up, else whole hours when it is.
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return d.String()
}

// Config returns the settings of sandbox ("" for the root-wide ones only).
func (e *Env) Config(sandbox string) (*Settings, error) {
	s := &Settings{}
	if sandbox != "" {
		sb, err := e.getSandbox(sandbox)
		if err != nil {
			return nil, err
		}
		r := retentionOf(sb)
		n := r.KeepSessions
		s.Sandbox, s.KeepRefused, s.KeepDiscarded, s.KeepSessions = sb.Name, FormatDuration(r.KeepRefused), FormatDuration(r.KeepDiscarded), &n
	}
	var err error
	s.KeepBytes, s.KeepBytesDefault, err = e.keepBytes()
	if err != nil {
		return nil, err
	}
	sessions, err := e.recoverySessions()
	if err != nil {
		return nil, err
	}
	for _, rs := range sessions {
		s.RecoveryBytes += rs.bytes()
		s.RecoveryDiskBytes += rs.diskBytes()
	}
	return s, nil
}

// SetRetention changes a sandbox's retention and audits it; the new
// settings apply at once (what they no longer keep is dropped).
func (e *Env) SetRetention(sandbox string, c RetentionChange) (*Settings, error) {
	if err := e.lockSandbox(sandbox); err != nil {
		return nil, err
	}
	err := e.store.Update(func(tx *store.Tx) error {
		sb, err := tx.GetSandbox(sandbox)
		if err != nil {
			return noSandbox(sandbox, err)
		}
		r, err := c.apply(retentionOf(sb))
		if err != nil {
			return err
		}
		sb.Retention = &r
		if err := tx.PutSandbox(sb); err != nil {
			return err
		}
		_, err = tx.Append(e.Now(), "sandbox.config", sandbox, map[string]string{
			"keep_refused": FormatDuration(r.KeepRefused), "keep_discarded": FormatDuration(r.KeepDiscarded),
			"keep_sessions": strconv.Itoa(r.KeepSessions),
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	if _, err := e.applyRetention(sandbox); err != nil {
		return nil, err
	}
	return e.Config(sandbox)
}

// SetKeepBytes sets the root-wide cap of the recovery area (-1: back to
// the default) and audits it; the oldest sessions over it go at once.
func (e *Env) SetKeepBytes(n int64) (*Settings, error) {
	v := ""
	if n >= 0 {
		v = strconv.FormatInt(n, 10)
	}
	err := e.store.Update(func(tx *store.Tx) error {
		if err := tx.PutMeta(metaKeepBytes, v); err != nil {
			return err
		}
		_, err := tx.Append(e.Now(), "recovery.config", "", map[string]string{"keep_bytes": v})
		return err
	})
	if err != nil {
		return nil, err
	}
	if _, err := e.enforceCap(); err != nil {
		return nil, err
	}
	return e.Config("")
}

// keepBytes returns the root-wide cap and whether it is the default (10%
// of the filesystem holding the root).
func (e *Env) keepBytes() (int64, bool, error) {
	var v string
	if err := e.store.View(func(tx *store.Tx) error {
		var err error
		v, _, err = tx.GetMeta(metaKeepBytes)
		return err
	}); err != nil {
		return 0, false, err
	}
	if v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("store: bad %s %q", metaKeepBytes, v)
		}
		return n, false, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(e.root, &st); err != nil {
		return 0, true, fmt.Errorf("statfs %s: %w", e.root, err)
	}
	return int64(st.Blocks) * st.Bsize / 10, true, nil
}
