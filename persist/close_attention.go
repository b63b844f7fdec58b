package persist

import (
	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/persist/hostile"
)

// Attention is a discarded change in a place where, had it persisted, it
// could run code or grant access later (a shell start-up file, autostart,
// cron, a PATH directory, ld.so.preload, ~/.ssh): malware-like changes,
// which the close summary lists before anything else.
type Attention struct {
	Path      string          `json:"path"`
	PathBytes []byte          `json:"path_bytes,omitempty"` // the exact bytes when path is not valid UTF-8
	Kind      change.Kind     `json:"kind"`
	Type      change.FileType `json:"type"`
	Code      string          `json:"code"` // the lint code of the place, e.g. "shell-startup"
	What      string          `json:"what"` // the place in words
}

// AttentionSample is how many such changes a close summary names; the
// manifest lists every discarded change.
const AttentionSample = 20

// attention collects the malware-like discards of one close, bounded.
type attention struct {
	count int64
	first []Attention
}

// add notes c if it lies in a risky place.
func (a *attention) add(c hostile.Change) {
	code, what, ok := exceptions.RiskyPlace(c.Path)
	if !ok {
		return
	}
	a.count++
	if len(a.first) < AttentionSample {
		a.first = append(a.first, Attention{Path: c.Path, PathBytes: exactBytes(c.Path), Kind: c.Kind, Type: c.Type, Code: code, What: what})
	}
}

// fill puts the collected changes into sum.
func (a *attention) fill(sum *CloseSummary) {
	sum.Attention, sum.AttentionCount = a.first, a.count
	if sum.Attention == nil {
		sum.Attention = []Attention{}
	}
}

// execDropped says whether persisting c under d's exception drops execute
// bits it had (the exception lacks --allow-exec).
func execDropped(d Classification) bool {
	c := d.Change
	return c.Kind != change.KindDelete && c.Type == change.TypeFile && c.Mode&0o111 != 0 && !d.Exception.AllowExec
}
