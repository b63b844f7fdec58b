package persist

import (
	"context"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/store"
)

// HostOf tells which host wrote a record or an audit entry, for the
// --host filters of review ls, log and serve. It reads each session once.
type HostOf struct {
	e     *Env
	hosts map[sessionRef]string
}

type sessionRef struct {
	sandbox string
	n       uint64
}

// HostOf returns a HostOf reading e's ledger.
func (e *Env) HostOf() *HostOf { return &HostOf{e: e, hosts: map[sessionRef]string{}} }

// Session returns the host that opened a sandbox's session ("" when it
// has none: a session of a ledger written before hosts, or unknown).
func (h *HostOf) Session(sandbox string, n uint64) (string, error) {
	ref := sessionRef{sandbox, n}
	if host, ok := h.hosts[ref]; ok {
		return host, nil
	}
	var host string
	err := h.e.store.View(func(tx *store.Tx) error {
		se, err := tx.GetSession(sandbox, n)
		if errdefs.IsNotFound(err) {
			return nil
		}
		if err == nil {
			host = se.Host
		}
		return err
	})
	if err != nil {
		return "", err
	}
	h.hosts[ref] = host
	return host, nil
}

// Record returns the host whose close wrote r: its session's host; for a
// record of recover restore, the host that restored it.
func (h *HostOf) Record(r *store.Record) (string, error) {
	if r.Exception == RecoverID {
		var by string
		var ok bool
		err := h.e.store.View(func(tx *store.Tx) error {
			var err error
			by, ok, err = tx.GetMeta(restoredByMeta(r.Sandbox, r.ID))
			return err
		})
		if err != nil || ok {
			return by, err
		}
	}
	return h.Session(r.Sandbox, r.Session)
}

// EventMatches says whether an audit entry belongs under --host host: it
// was written on host (Event), or it is a fleet entry about host (its
// data "host": the host evicted, forgotten or rejoined; the importing
// host of fleet.import, which wrote it too).
func (h *HostOf) EventMatches(ev *store.Event, host string) (bool, error) {
	if strings.HasPrefix(ev.Type, "fleet.") && ev.Data["host"] == host {
		return true, nil
	}
	writer, err := h.Event(ev)
	return writer == host, err
}

// Event returns the host an audit entry was written on: the host of the
// session it names (data "session"), else its data "by" (fleet.evict),
// else its data "host" (fleet.import); "" when it names none.
func (h *HostOf) Event(ev *store.Event) (string, error) {
	if s := ev.Data["session"]; s != "" && ev.Sandbox != "" {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			if host, err := h.Session(ev.Sandbox, n); err != nil || host != "" {
				return host, err
			}
		}
	}
	if by := ev.Data["by"]; by != "" {
		return by, nil
	}
	return ev.Data["host"], nil
}

// CheckHost says whether the ledger knows host, for the --host filters:
// this host, a host in its list (FleetHosts), one `fleet forget` removed
// (its records and entries stay), or the host of a root `fleet import`
// brought in (its sessions name it). Anything else is a
// NotFoundError, so that a mistyped host is not an empty result.
func (e *Env) CheckHost(ctx context.Context, host string) error {
	if err := ValidateName("host", host); err != nil {
		return err
	}
	if host == e.hostID {
		return nil
	}
	hosts, _, _, err := e.FleetHosts()
	if err != nil {
		return err
	}
	if slices.ContainsFunc(hosts, func(h *store.Host) bool { return h.ID == host }) {
		return nil
	}
	// A host forgotten, or the source host of a fleet import: the rare
	// path (or a typo), so one pass over the audit log is affordable here.
	found := false
	err = e.ForEachEventAfter(ctx, "", 0, func(ev *Event) error {
		if ev.Type == "fleet.forget" && ev.Data["host"] == host || ev.Type == store.ImportType && ev.Data["source_host"] == host {
			found = true
			return ErrStop
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !found {
		return &NotFoundError{Kind: "host", Name: host}
	}
	return nil
}

// restoredByMeta is the meta key naming the host whose recover restore
// wrote record id into sandbox, on a shared ledger: a restore of a fenced
// session's work runs on the host that did that work, while the record's
// session is the sandbox's last one, which another host may have opened.
func restoredByMeta(sandbox string, id uint64) string {
	return restoredByPrefix(sandbox) + strconv.FormatUint(id, 10)
}

// restoredByPrefix starts the keys of sandbox's restoredByMeta notes.
func restoredByPrefix(sandbox string) string { return "restored-by/" + sandbox + "/" }

// recordHost is the host whose close (or recover restore) wrote r, within
// tx; hosts caches the sessions' hosts.
func recordHost(tx *store.Tx, r *store.Record, hosts map[sessionRef]string) (string, error) {
	if r.Exception == RecoverID {
		by, ok, err := tx.GetMeta(restoredByMeta(r.Sandbox, r.ID))
		if err != nil || ok {
			return by, err
		}
	}
	ref := sessionRef{r.Sandbox, r.Session}
	if host, seen := hosts[ref]; seen {
		return host, nil
	}
	var host string
	se, err := tx.GetSession(r.Sandbox, r.Session)
	switch {
	case err == nil:
		host = se.Host
	case !errdefs.IsNotFound(err):
		return "", err
	}
	hosts[ref] = host
	return host, nil
}

// CheckScope checks that a --sandbox/--host scope (review ls, log, serve's
// pages) names what the ledger has: sandbox a sandbox, host one the ledger
// knows (CheckHost); otherwise a NotFoundError, not an empty result.
func (e *Env) CheckScope(ctx context.Context, host, sandbox string) error {
	if sandbox != "" {
		// What review ls reads, past the last record: only the sandbox's
		// own lookup.
		if err := e.ReviewEach(ctx, sandbox, math.MaxUint64, func(*Record) error { return nil }); err != nil {
			return err
		}
	}
	if host != "" {
		return e.CheckHost(ctx, host)
	}
	return nil
}

// CheckLogScope is CheckScope for the audit log (log, serve's audit
// page): a sandbox counts when the log has ever seen it, so that a removed
// sandbox's entries stay readable; a name it never saw is a typo, not an
// empty log.
func (e *Env) CheckLogScope(ctx context.Context, host, sandbox string) error {
	if err := e.CheckScope(ctx, host, ""); err != nil || sandbox == "" {
		return err
	}
	seen := false
	if err := e.ForEachEventAfter(ctx, sandbox, 0, func(*Event) error { seen = true; return ErrStop }); err != nil {
		return err
	}
	if !seen {
		return &NotFoundError{Kind: "sandbox", Name: sandbox}
	}
	return nil
}
