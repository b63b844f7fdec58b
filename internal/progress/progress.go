// Package progress is how long operations (image import, open applying a
// persisted state, close reading the changes) tell how far they have come,
// in one shape for all, as restic's ui/progress: a Progress that is told a
// Status now and then and Done at the end, with a no-op default.
package progress

import (
	"fmt"

	"github.com/spillway/spillway/internal/units"
)

// Progress is told about long work. Update is called now and then (not for
// every item), from the goroutine doing the work; Done when the operation
// ends, successful or not.
type Progress interface {
	Update(s Status)
	Done()
}

// Status is how far an operation has come.
type Status struct {
	What  string // the operation, e.g. "importing base", "closing docs"
	Items int64  // items done so far
	Total int64  // items in all, 0 when not known
	Unit  string // what the items are, e.g. "files", "changes read"
	Bytes int64  // bytes done so far, 0 when not counted
}

// String is the status as one line, e.g. "importing base: 2000 files,
// 1.5 MiB" or "applying persisted state: 3000/10000 files".
func (s Status) String() string {
	out := fmt.Sprintf("%s: %d", s.What, s.Items)
	if s.Total > 0 {
		out += fmt.Sprintf("/%d", s.Total)
	}
	out += " " + s.Unit
	if s.Bytes > 0 {
		out += ", " + units.FormatSize(s.Bytes)
	}
	return out
}

// None is the Progress that shows nothing.
var None Progress = none{}

type none struct{}

func (none) Update(Status) {}
func (none) Done()         {}

// Or is p, or None when p is nil.
func Or(p Progress) Progress {
	if p == nil {
		return None
	}
	return p
}

// Named is p with What set to what on every Status that has none (for a
// lower layer that does not know the operation's name).
func Named(p Progress, what string) Progress { return named{Or(p), what} }

type named struct {
	Progress
	what string
}

func (n named) Update(s Status) {
	if s.What == "" {
		s.What = n.what
	}
	n.Progress.Update(s)
}
