package persist

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// Review decisions made while a sandbox is open take effect at its next
// open (SPEC); a session's own later change to such a path is a new
// record, and close says so. Each decision that changes what is in effect
// while the sandbox is open notes the record under decidedOpenMeta; close
// names the notes whose path it persists again, and drops them.

// decidedOpenMeta is the meta key of record id decided while session n of
// sandbox was open; its value is "STATUS PATH".
func decidedOpenMeta(sandbox string, n, id uint64) string {
	return fmt.Sprintf("decided-open/%s/%d/%d", sandbox, n, id)
}

// decidedOpenPrefix is the prefix of the notes of session n of sandbox
// (n 0: of all its sessions).
func decidedOpenPrefix(sandbox string, n uint64) string {
	if n == 0 {
		return "decided-open/" + sandbox + "/"
	}
	return fmt.Sprintf("decided-open/%s/%d/", sandbox, n)
}

// Overridden is a decision made while the sandbox was open whose path the
// session changed again: the close persists a new record of it.
type Overridden struct {
	Record uint64        `json:"record"` // the record decided
	Status change.Status `json:"status"` // approved or rejected
	Path   string        `json:"path"`
}

// noteDecidedWhileOpen fills sum.Overridden from the notes of sb's
// session.
func (e *Env) noteDecidedWhileOpen(ctx context.Context, sb *store.Sandbox, sum *CloseSummary) error {
	sum.Overridden = []Overridden{}
	notes := map[string]Overridden{}
	err := e.store.View(func(tx *store.Tx) error {
		return tx.ForEachMeta(ctx, decidedOpenPrefix(sb.Name, sb.Session), func(k, v string) error {
			id, err := strconv.ParseUint(k[strings.LastIndexByte(k, '/')+1:], 10, 64)
			status, path, ok := strings.Cut(v, " ")
			if err == nil && ok {
				notes[path] = Overridden{Record: id, Status: change.Status(status), Path: path}
			}
			return nil
		})
	})
	if err != nil || len(notes) == 0 {
		return err
	}
	sum.hadDecidedNotes = true
	for _, p := range sum.Persisted {
		if o, ok := notes[p.Path]; ok {
			sum.Overridden = append(sum.Overridden, o)
		}
	}
	return nil
}

// dropDecidedWhileOpen removes the notes of a session (n 0: of every
// session of sandbox), in batches.
func (e *Env) dropDecidedWhileOpen(ctx context.Context, sandbox string, n uint64) error {
	return e.dropMetaPrefix(ctx, decidedOpenPrefix(sandbox, n))
}
