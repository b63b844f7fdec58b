package persist

import (
	"strconv"

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

// Record returns the host whose close wrote r: its session's host.
func (h *HostOf) Record(r *store.Record) (string, error) { return h.Session(r.Sandbox, r.Session) }

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
