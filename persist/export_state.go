package persist

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/store"
)

// At names a persisted state: the current one (both zero), the one the
// close of a session left (Session), or the one of a generation
// (Generation). At most one is set.
type At struct {
	Session    uint64
	Generation uint64
}

// StateAt returns the persisted state of a sandbox at at, and the
// generation it is. The current state is derived as LoadState does; a past
// one is rebuilt from the records whose session had closed by that
// generation, with the review decisions and purges that came later (the
// audit log says at which generation each happened) taken back. Reading a
// past state scans the sandbox's history and its audit log.
func (e *Env) StateAt(ctx context.Context, sandbox string, at At) (State, uint64, error) {
	if at.Session > 0 && at.Generation > 0 {
		return nil, 0, invalidf("give a session or a generation, not both")
	}
	var (
		st       State
		gen      uint64
		sb       *store.Sandbox
		closedAt = map[uint64]uint64{} // session → generation its close made
		openedAt = map[uint64]time.Time{}
		recs     []*store.Record
	)
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		sb, err = tx.GetSandbox(sandbox)
		if err != nil {
			return noSandbox(sandbox, err)
		}
		gen = sb.Generation
		if at.Session > 0 {
			// A number past the sandbox's sessions is none of its own,
			// though a removed sandbox of that name may have left its row.
			ses, err := tx.GetSession(sandbox, at.Session)
			if err != nil || ses.State != store.StateClosed || at.Session > sb.Session {
				return errclass.Errorf(errdefs.ErrNotFound, "%s has no closed session %d", sandbox, at.Session)
			}
			gen = ses.ClosedGeneration
		} else if at.Generation > 0 {
			if at.Generation > sb.Generation {
				return errclass.Errorf(errdefs.ErrNotFound, "%s has no generation %d (the current one is %d)", sandbox, at.Generation, sb.Generation)
			}
			gen = at.Generation
		}
		if gen == sb.Generation {
			st, err = LoadState(ctx, tx, sb)
			return err
		}
		sessions, err := tx.ListSessions(sandbox)
		if err != nil {
			return err
		}
		for _, s := range sessions {
			if s.State == store.StateClosed {
				closedAt[s.N] = s.ClosedGeneration
			}
			openedAt[s.N] = s.Opened
		}
		return tx.ForEachRecord(ctx, sandbox, func(r *store.Record) error {
			if g, ok := closedAt[r.Session]; ok && g <= gen && r.Status != change.StatusRefused {
				recs = append(recs, r)
			}
			return nil
		})
	})
	if err != nil || st != nil {
		return st, gen, err
	}
	// The audit log is read after the records: a decision made in between
	// is one the records may not show yet, and taking it back changes
	// nothing.
	later, purgedLater, restoredLater, err := e.laterChanges(ctx, sandbox, gen)
	if err != nil {
		return nil, 0, err
	}
	st = State{}
	for _, r := range recs {
		if restoredLater[r.ID] {
			continue // made by a restore after gen
		}
		if inEffectAt(r, later[r.ID], purgedLater[r.Exception]) {
			st[r.Path] = r
		}
	}
	st.dropReplaced(&pastSeen{opened: openedAt, recs: recs, inEffect: func(r *store.Record) bool {
		return !restoredLater[r.ID] && inEffectAt(r, later[r.ID], purgedLater[r.Exception])
	}})
	st.dropOrphans()
	return st, gen, nil
}

// inEffectAt says whether r was in effect at a past generation, given
// whether its review decision and its purge came after it. A pruned
// record stays in: exporting it must say its content is gone.
func inEffectAt(r *store.Record, decidedLater, purgedLater bool) bool {
	if r.Purged && !purgedLater {
		return false
	}
	status := r.Status
	if decidedLater {
		status = change.StatusPending
	}
	switch status {
	case change.StatusApproved:
		return true
	case change.StatusPending:
		return r.Review != change.ReviewBefore
	}
	return false
}

// laterChanges reads from the audit log the records decided, the
// exceptions purged and the records restored after generation gen.
func (e *Env) laterChanges(ctx context.Context, sandbox string, gen uint64) (decided map[uint64]bool, purged map[string]bool, restored map[uint64]bool, err error) {
	decided, purged, restored = map[uint64]bool{}, map[string]bool{}, map[uint64]bool{}
	ids := func(field string, into map[uint64]bool) {
		for _, f := range strings.Fields(field) {
			if id, err := strconv.ParseUint(strings.TrimPrefix(f, "r"), 10, 64); err == nil {
				into[id] = true
			}
		}
	}
	err = e.store.ForEachEvent(ctx, sandbox, func(ev *store.Event) error {
		g, err := strconv.ParseUint(ev.Data["generation"], 10, 64)
		if err != nil || g <= gen {
			return nil
		}
		switch ev.Type {
		case "review.approve", "review.reject":
			ids(ev.Data["records"], decided)
		case "exception.purge":
			purged[ev.Data["exception"]] = true
		case "recover.restore":
			ids(ev.Data["record_ids"], restored)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("audit log: %w", err)
	}
	return decided, purged, restored, nil
}

// pastSeen is what store.Replaces reads of a past generation: when its
// sessions opened, and which records of a path were in effect then.
type pastSeen struct {
	opened   map[uint64]time.Time
	recs     []*store.Record // the records of the sessions closed by then
	inEffect func(*store.Record) bool
	byPath   map[string][]*store.Record // recs in effect by path, by id (made once)
}

func (p *pastSeen) SessionOpened(_ string, n uint64) time.Time { return p.opened[n] }

func (p *pastSeen) PathInEffect(_, path string) ([]*store.Record, error) {
	if p.byPath == nil {
		p.byPath = map[string][]*store.Record{}
		for _, r := range p.recs {
			if p.inEffect(r) {
				p.byPath[r.Path] = append(p.byPath[r.Path], r)
			}
		}
		for _, rs := range p.byPath {
			sort.Slice(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
		}
	}
	return p.byPath[path], nil
}
