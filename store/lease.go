package store

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/names"
)

// Hosts and leases (docs/fleet.md): a sandbox's session is written by one
// host at a time, the holder of its lease. Taking a lease draws a fencing
// token from a counter; every write of the session checks, in its own
// transaction, that the token is still the sandbox's, so a host that lost
// its lease (it stalled past its TTL and another host took over) writes
// nothing. Liveness is a host's row, renewed by `spillway fleet agent`; all
// comparisons use Tx.Now, the ledger's clock.
//
//	h:HOST      host
//	l:SANDBOX   lease
const (
	pHost  = "h:"
	pLease = "l:"
)

// DefaultHostTTL is how long a host counts as live after its last
// heartbeat, unless it says otherwise.
const DefaultHostTTL = 30 * time.Second

// Host is one machine that shares the ledger.
type Host struct {
	ID       string
	First    time.Time     // first heartbeat
	LastSeen time.Time     // last heartbeat (ledger clock)
	TTL      time.Duration // live until LastSeen+TTL
	// Evicted is when `fleet evict` freed the host's leases (zero: never,
	// or a heartbeat came since); EvictReason says why.
	Evicted     time.Time
	EvictReason string
	// Root is the id of the state directory that uses this host id (a
	// random id it keeps; "" before hosts kept one). Another directory
	// may take the id over only after an eviction (HeartbeatFrom).
	Root string
}

// HeldByOther says whether another state directory than root uses the
// host id (its row names it and it was not evicted since): root may not
// heartbeat or write as this host.
func (h *Host) HeldByOther(root string) bool {
	return h.Root != "" && h.Root != root && h.Evicted.IsZero()
}

// Live says whether the host counts as running at now.
func (h *Host) Live(now time.Time) bool {
	return h.Evicted.IsZero() && now.Before(h.LastSeen.Add(h.TTL))
}

// Lease says which host may write a sandbox's session.
type Lease struct {
	Sandbox string
	Host    string
	Token   uint64 // fencing token: strictly increasing across the ledger
	Taken   time.Time
}

// HeldError is a lease another live host holds.
type HeldError struct {
	Sandbox, Holder string
	LastSeen        time.Time // the holder's last heartbeat
	Now             time.Time // the ledger's clock when it was refused
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("sandbox %s is in use on host %s (last seen %s ago)", e.Sandbox, e.Holder, e.Now.Sub(e.LastSeen).Round(time.Second))
}

// Unwrap classes the error as a resource in use (exit code of InUse).
func (e *HeldError) Unwrap() error { return errdefs.ErrUnavailable }

// HostIDTakenError is a heartbeat from a state directory whose host id
// another directory uses (two roots, or two cloned machines, given one
// id): their sessions would pass for each other's.
type HostIDTakenError struct {
	Host     string
	LastSeen time.Time // the other directory's last heartbeat
	Now      time.Time
}

func (e *HostIDTakenError) Error() string {
	return fmt.Sprintf("host id %s belongs to another state directory (last seen %s ago): if this one is a copy (a cloned machine), give it its own id: remove its host-id and root-id files, then --host-id NEW; if that other directory is gone for good (a reinstalled host), free the id first from another host with spillway fleet evict %s --reason TEXT",
		e.Host, e.Now.Sub(e.LastSeen).Round(time.Second), e.Host)
}

// Unwrap classes the error as a failed precondition.
func (e *HostIDTakenError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// ErrFenced is wrapped by every write refused because the writer's lease
// is no longer the sandbox's.
var ErrFenced = errclass.New(errdefs.ErrFailedPrecondition, "fenced")

// FencedError is a write by a host whose token is no longer the sandbox's.
type FencedError struct {
	Sandbox, Host string
	Token         uint64
	Holder        string // the lease's holder now ("" when none)
}

func (e *FencedError) Error() string {
	who := "no host holds it now"
	switch e.Holder {
	case "":
	case e.Host:
		// The lease was freed (an eviction) and taken again since.
		who = "it holds a new lease now"
	default:
		who = "host " + e.Holder + " holds it now"
	}
	return fmt.Sprintf("fenced: host %s lost the lease of sandbox %s (token %d; %s)", e.Host, e.Sandbox, e.Token, who)
}

func (e *FencedError) Unwrap() error { return ErrFenced }

// clockTx is a driver transaction with a clock of its own (PostgreSQL's).
type clockTx interface{ now() time.Time }

// Now is the ledger's clock: the time every expiry is compared with. On
// PostgreSQL it is the server's now() of the transaction, so hosts whose
// clocks disagree still agree on who is live.
func (tx *Tx) Now() time.Time {
	if c, ok := tx.b.(clockTx); ok {
		return c.now()
	}
	return tx.s.now()
}

// Heartbeat records that host id is running, with the given TTL (0: the
// one it has, or the default for a new host). A heartbeat after an
// eviction makes the host live again; the leases the eviction freed stay
// freed.
func (tx *Tx) Heartbeat(id string, ttl time.Duration) (*Host, error) {
	return tx.HeartbeatFrom(id, "", ttl)
}

// HeartbeatFrom is Heartbeat from the state directory root (its random
// id; "" checks nothing). The first directory to beat for a host id keeps
// it: another one is refused (HostIDTakenError) until an eviction frees
// the id. A heartbeat after an eviction is audited (fleet.rejoin).
func (tx *Tx) HeartbeatFrom(id, root string, ttl time.Duration) (*Host, error) {
	if err := checkName("host", id); err != nil {
		return nil, err
	}
	if !names.Valid(id) {
		return nil, fmt.Errorf("store: invalid host name %q", id)
	}
	now := tx.Now()
	h, err := tx.GetHost(id)
	if isNotFound(err) {
		h, err = &Host{ID: id, First: now, TTL: DefaultHostTTL}, nil
	}
	if err != nil {
		return nil, err
	}
	otherRoot := root != "" && h.Root != "" && h.Root != root
	if otherRoot && h.Evicted.IsZero() {
		return nil, &HostIDTakenError{Host: id, LastSeen: h.LastSeen, Now: now}
	}
	if !h.Evicted.IsZero() {
		data := map[string]string{"host": id, "evicted": h.Evicted.Format(time.RFC3339), "reason": h.EvictReason}
		if otherRoot {
			data["new_state_directory"] = "true"
		}
		if _, err := tx.Append(now, "fleet.rejoin", "", data); err != nil {
			return nil, err
		}
	}
	if ttl <= 0 {
		ttl = h.TTL
	}
	if root != "" {
		h.Root = root
	}
	h.LastSeen, h.TTL, h.Evicted, h.EvictReason = now, ttl, time.Time{}, ""
	return h, tx.put(key(pHost, id), h)
}

// GetHost returns the host id.
func (tx *Tx) GetHost(id string) (*Host, error) {
	h := new(Host)
	if err := tx.getObj("host", id, key(pHost, id), h); err != nil {
		return nil, err
	}
	if err := checkRowName("host", id, h.ID); err != nil {
		return nil, err
	}
	return h, nil
}

// checkHostField refuses a row (a lease, a session) read back whose host
// is not a valid host name. spillway never writes one, but any host of a
// shared ledger can write any row, and host ids go into messages and
// tables on a terminal as they are: an id holding escapes would reach it.
func checkHostField(kind, keyed, host string) error {
	if host != "" && !names.Valid(host) {
		return errclass.Errorf(errdefs.ErrDataLoss, "store: %s row %q names host %q, a row spillway never writes (written by another host of a shared ledger, or by hand): remove or repair it", kind, keyed, host)
	}
	return nil
}

// ListHosts returns every host that ever shared the ledger, by id.
func (tx *Tx) ListHosts() ([]*Host, error) {
	var out []*Host
	err := tx.scan([]byte(pHost), true, func(k, v []byte) error {
		h := new(Host)
		if err := decode("host", v, h); err != nil {
			return err
		}
		if err := checkRowName("host", keyName(k, pHost), h.ID); err != nil {
			return err
		}
		out = append(out, h)
		return nil
	})
	return out, err
}

// GetLease returns the lease of a sandbox (ErrNotFound: none).
func (tx *Tx) GetLease(sandbox string) (*Lease, error) {
	l := new(Lease)
	if err := tx.getObj("lease", sandbox, key(pLease, sandbox), l); err != nil {
		return nil, err
	}
	if err := checkHostField("lease", sandbox, l.Host); err != nil {
		return nil, err
	}
	if l.Host == "" {
		return nil, fmt.Errorf("lease %q: %w", sandbox, ErrNotFound) // freed
	}
	return l, nil
}

// freeLease frees the lease l. Its row stays, with no host and its
// token, rather than being deleted: a taker of the lease locks that row
// (UpdateLeaseTaker), so the next taker waits for this transaction. Were
// it deleted, a taker whose snapshot is older than both another host's
// take and this release would find no row, lock nothing, and could
// insert a lease with a token drawn before that take's: tokens must only
// grow.
func (tx *Tx) freeLease(l *Lease) error {
	return tx.put(key(pLease, l.Sandbox), &Lease{Sandbox: l.Sandbox, Token: l.Token, Taken: l.Taken})
}

// ListLeases returns every lease, by sandbox.
func (tx *Tx) ListLeases() ([]*Lease, error) {
	var out []*Lease
	err := tx.scan([]byte(pLease), true, func(k, v []byte) error {
		l := new(Lease)
		if err := decode("lease", v, l); err != nil {
			return err
		}
		if err := checkHostField("lease", keyName(k, pLease), l.Host); err != nil {
			return err
		}
		if l.Host != "" { // not freed
			out = append(out, l)
		}
		return nil
	})
	return out, err
}

// TakeLease gives host the lease of sandbox: the one it holds already, or
// a new one with a new token when no live host holds it. prev is the lease
// it replaced (nil: there was none or it was host's own): a takeover from
// a host that died or was evicted.
func (tx *Tx) TakeLease(sandbox, host string) (l, prev *Lease, err error) {
	if err := checkName("sandbox", sandbox); err != nil {
		return nil, nil, err
	}
	now := tx.Now()
	cur, err := tx.GetLease(sandbox)
	switch {
	case err == nil && cur.Host == host:
		return cur, nil, nil
	case err == nil:
		holder, herr := tx.GetHost(cur.Host)
		if herr != nil && !isNotFound(herr) {
			return nil, nil, herr
		}
		if herr == nil && holder.Live(now) {
			return nil, nil, &HeldError{Sandbox: sandbox, Holder: cur.Host, LastSeen: holder.LastSeen, Now: now}
		}
		prev = cur
	case !isNotFound(err):
		return nil, nil, err
	}
	token, err := tx.next("lease")
	if err != nil {
		return nil, nil, err
	}
	l = &Lease{Sandbox: sandbox, Host: host, Token: token, Taken: now}
	return l, prev, tx.put(key(pLease, sandbox), l)
}

// CheckLease fails with a FencedError unless host holds the lease of
// sandbox with token. Every write of a session calls it in its own
// transaction, so the write and the check commit together or not at all.
func (tx *Tx) CheckLease(sandbox, host string, token uint64) error {
	cur, err := tx.GetLease(sandbox)
	if isNotFound(err) {
		return &FencedError{Sandbox: sandbox, Host: host, Token: token}
	}
	if err != nil {
		return err
	}
	if cur.Host != host || cur.Token != token {
		return &FencedError{Sandbox: sandbox, Host: host, Token: token, Holder: cur.Host}
	}
	return nil
}

// ReleaseLease gives up host's lease of sandbox (fenced if it is not
// host's with token any more).
func (tx *Tx) ReleaseLease(sandbox, host string, token uint64) error {
	if err := tx.CheckLease(sandbox, host, token); err != nil {
		return err
	}
	l, err := tx.GetLease(sandbox)
	if err != nil {
		return err
	}
	return tx.freeLease(l)
}

// DropLease removes the lease of sandbox whoever holds it (the sandbox is
// being removed).
func (tx *Tx) DropLease(sandbox string) error { return tx.del(key(pLease, sandbox)) }

// EvictHost marks host evicted now and frees every lease it holds, at
// once, whatever its heartbeat says. It returns the sandboxes freed.
func (tx *Tx) EvictHost(id, reason string) ([]string, error) {
	h, err := tx.GetHost(id)
	if err != nil {
		return nil, err
	}
	h.Evicted, h.EvictReason = tx.Now(), reason
	if err := tx.put(key(pHost, id), h); err != nil {
		return nil, err
	}
	leases, err := tx.ListLeases()
	if err != nil {
		return nil, err
	}
	var freed []string
	for _, l := range leases {
		if l.Host != id {
			continue
		}
		if err := tx.freeLease(l); err != nil {
			return nil, err
		}
		freed = append(freed, l.Sandbox)
	}
	return freed, nil
}

// ForgetHost removes host id's row: a host taken out of the fleet for
// good, or an id given by mistake. A live host, or one that holds a lease,
// is refused: evict it first. Its sessions and audit entries keep its id.
func (tx *Tx) ForgetHost(id string) error {
	h, err := tx.GetHost(id)
	if err != nil {
		return err
	}
	if h.Live(tx.Now()) {
		return errclass.Errorf(errdefs.ErrFailedPrecondition, "host %s is live (last seen %s ago): stop it, or evict it first (spillway fleet evict %s --reason TEXT --force)", id, tx.Now().Sub(h.LastSeen).Round(time.Second), id)
	}
	leases, err := tx.ListLeases()
	if err != nil {
		return err
	}
	var held []string
	for _, l := range leases {
		if l.Host == id {
			held = append(held, l.Sandbox)
		}
	}
	if len(held) > 0 {
		return errclass.Errorf(errdefs.ErrFailedPrecondition, "host %s holds the lease of %s: evict it first (spillway fleet evict %s --reason TEXT)", id, strings.Join(held, " "), id)
	}
	return tx.del(key(pHost, id))
}

// IsFenced says whether err is a write refused for a lost lease.
func IsFenced(err error) bool { return errors.Is(err, ErrFenced) }
