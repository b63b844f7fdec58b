package persist

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// ---- Round three: the recovery area and its retention, review, prune
// and history, host and lease rows, checkpoints, as the victim h2 sees
// them after rows forged from h1 (helpers: fleet_forged_rows_test.go).
// Tests whose comment says "was a hole" failed before the fixes that
// followed (fenced sessions kept by this host's own rule; host names
// checked); the others fail if the protection they name goes.

// fencedOnVictim opens docs on h2 with an unsaved file, has h1 rewrite
// docs' row with forge (the lease stays h2's), then runs h2's `open docs`,
// which fences the old root (open-session journal: its changes go to the
// recovery area). It returns the fenced session's number, and fails unless
// the unsaved file is then in h2's recovery area.
func fencedOnVictim(t *testing.T, h1, h2 *fixture, forge func(tx *store.Tx, sb *store.Sandbox) error) uint64 {
	t.Helper()
	n := openWithUnsaved(t, h2)
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		sb, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		return forge(tx, sb)
	})
	var err error
	withTimeout(t, 2*time.Minute, "open", func(ctx context.Context) { _, err = h2.e.OpenSandbox(ctx, "docs") })
	t.Logf("the victim's open of docs after the forged row: %v", err)
	if !unsavedKept(t, h2, "docs", n, "home/user/Documents/unsaved.txt", "unsaved work\n") {
		t.Fatalf("the open fenced nothing: session %d's unsaved work is neither in its root nor in the recovery area", n)
	}
	return n
}

// Was a hole: the recovery area's retention counts sessions by the ledger's
// session number and takes its settings (keep-sessions, keep-refused, the
// root-wide keep-bytes) from ledger rows any host writes. A session this
// host opened and never closed, fenced because a forged row said docs was
// closed (its unsaved work moved to the recovery area, reason "fenced"),
// is then dropped by the victim's next gc (ExpireRecovery →
// applyRetention / enforceCap, persist/retention_apply.go):
//   - session-counter: the row says docs' last session is n+7: the
//     fenced session n falls outside the newest 7 (expiry: rs.n +
//     KeepSessions <= last), and recover ls no longer lists it either;
//   - keep-sessions-0: the row's Retention keeps no session;
//   - keep-bytes-0: the meta recovery.keep-bytes (one value for every
//     host's root) is 0: enforceCap removes every session of every
//     sandbox on the victim.
//
// The same happens without an attacker to a host that stalled while
// other hosts ran 7 sessions of the sandbox: its fenced close's changes
// are gone at its next gc.
func TestForged3RetentionDropsFencedSession(t *testing.T) {
	cases := map[string]func(tx *store.Tx, sb *store.Sandbox) error{
		"session-counter": func(tx *store.Tx, sb *store.Sandbox) error {
			sb.State, sb.Session = store.StateClosed, sb.Session+7
			return tx.PutSandbox(sb)
		},
		"keep-sessions-0": func(tx *store.Tx, sb *store.Sandbox) error {
			sb.State, sb.Retention = store.StateClosed, &store.Retention{KeepRefused: 7 * 24 * time.Hour, KeepDiscarded: time.Hour}
			return tx.PutSandbox(sb)
		},
		"keep-bytes-0": func(tx *store.Tx, sb *store.Sandbox) error {
			sb.State = store.StateClosed
			if err := tx.PutMeta(metaKeepBytes, "0"); err != nil {
				return err
			}
			return tx.PutSandbox(sb)
		},
	}
	for name, forge := range cases {
		t.Run(name, func(t *testing.T) {
			h1, h2, canaryDir := forgedFleet(t)
			n := fencedOnVictim(t, h1, h2, forge)
			var listed int
			err := h2.e.RecoverList(h2.ctx, "docs", n, "", func(RecoverEntry) error { listed++; return nil })
			t.Logf("recover ls docs --session %d: %d entries, %v", n, listed, err)
			runGC(t, h2)
			if !unsavedKept(t, h2, "docs", n, "home/user/Documents/unsaved.txt", "unsaved work\n") {
				t.Errorf("the victim's gc removed the recovery area of session %d, which it opened and never closed (fenced after a forged row, %s): its unsaved work is gone", n, name)
			}
			assertCanaryDir(t, canaryDir)
		})
	}
}

// A forged retention on docs (keep nothing) and a forged session counter
// on docs make the victim's gc, close and recover purge of docs drop docs'
// recovery sessions only: the recovery area of secret, another sandbox,
// stays as it was. (Fails if retention stopped scoping the sessions it
// looks at by sandbox: applyRetention's recoverySessions(sandbox).)
func TestForged3RetentionOtherSandboxArea(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	secretRoot := secretOnVictim(t, h1, h2)
	write(t, secretRoot, "/tmp/scratch.txt", "secret's discarded work\n", 0o644)
	if _, err := h2.e.CloseSandbox(h2.ctx, "secret", CloseOptions{}); err != nil {
		t.Fatal(err)
	}
	var secretN uint64
	h2.e.store.View(func(tx *store.Tx) error {
		sb, err := tx.GetSandbox("secret")
		if err == nil {
			secretN = sb.Session
		}
		return err
	})
	secretFile := filepath.Join(h2.e.sessionDir("secret", secretN), treeDir, "tmp/scratch.txt")
	if b, err := os.ReadFile(secretFile); err != nil || string(b) != "secret's discarded work\n" {
		t.Fatalf("secret's recovery area: %q %v", b, err)
	}
	forgeSandbox(t, h1, "docs", func(sb *store.Sandbox) {
		sb.Session = math.MaxUint64 - 1
		sb.Retention = &store.Retention{}
	})
	runGC(t, h2)
	d, err := h2.e.RecoverPurge("docs", 0)
	t.Logf("recover purge docs: %+v %v", d, err)
	withTimeout(t, time.Minute, "recover ls", func(ctx context.Context) {
		err = h2.e.RecoverList(ctx, "docs", 0, "", func(RecoverEntry) error { return nil })
	})
	t.Logf("recover ls docs: %v", err)
	if b, err := os.ReadFile(secretFile); err != nil || string(b) != "secret's discarded work\n" {
		t.Errorf("secret's recovery area after forged settings of docs: %q %v", b, err)
	}
	var found bool
	err = h2.e.RecoverList(h2.ctx, "secret", secretN, "", func(x RecoverEntry) error {
		found = found || x.Path == "/tmp/scratch.txt"
		return nil
	})
	if !found || err != nil {
		t.Errorf("recover ls secret lists no /tmp/scratch.txt any more: %v", err)
	}
	assertCanaryDir(t, canaryDir)
}

// Was a hole: host ids come from ledger rows (h:HOST, a lease's Host, a
// session's Host) that the store reads back unchecked (store/lease.go
// GetHost, ListHosts, GetLease, ListLeases; store/objects.go GetSession),
// unlike sandbox and image names (checkRowName). A forged live host whose
// id carries terminal escapes holding docs' lease makes the victim's
// `open docs` print them raw ("sandbox docs is in use on host ESC]52;c;…":
// OSC 52 writes the operator's clipboard, others retitle or redraw the
// terminal), and `fleet hosts` prints the id as it is. Should be refused
// as a row spillway never writes, as a sandbox name is.
func TestForged3HostNameEscapes(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	evil := "ghost\x1b]52;c;cm0gLXJmIH4K\x07\x1b[2J"
	now := time.Now()
	sqlPut(t, h1, []byte("h:"+evil+"\x00"), &store.Host{ID: evil, First: now, LastSeen: now, TTL: 24 * time.Hour})
	sqlPut(t, h1, []byte("l:docs\x00"), &store.Lease{Sandbox: "docs", Host: evil, Token: 1 << 40, Taken: now})
	var err error
	withTimeout(t, time.Minute, "open", func(ctx context.Context) { _, err = h2.e.OpenSandbox(ctx, "docs") })
	t.Logf("open: %q", err)
	if err == nil {
		t.Errorf("open of docs while a forged live host holds its lease succeeded")
	} else if strings.ContainsAny(err.Error(), "\x1b\x07") {
		t.Errorf("the victim's open of docs says %q: a forged host id's terminal escapes reach the operator's terminal raw", err)
	}
	hosts, _, _, err := h2.e.FleetHosts()
	for _, h := range hosts {
		if ValidateName("host", h.ID) != nil {
			t.Errorf("fleet hosts on the victim lists the host %q, a name spillway never accepts (raw in the table)", h.ID)
		}
	}
	t.Logf("fleet hosts: %d hosts, %v", len(hosts), err)
}

// Lease rows forged while docs is open on the victim with unsaved work:
// a token of 0 or of max uint64 on h2's own lease, a lease naming a host
// that does not exist, a freed lease. The victim's close is fenced (the
// ledger gets nothing), its unsaved work stays in its recovery area, and
// the next open works or fails with an error, never a hang or panic.
// (Fails if close stopped checking the lease's host and token, CheckLease:
// the close would commit.)
func TestForged3LeaseRows(t *testing.T) {
	cases := map[string]func(l *store.Lease){
		"token-0":       func(l *store.Lease) { l.Token = 0 },
		"token-max":     func(l *store.Lease) { l.Token = math.MaxUint64 },
		"no-such-host":  func(l *store.Lease) { l.Host = "nosuchhost" },
		"freed-token-0": func(l *store.Lease) { l.Host, l.Token = "", 0 },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			h1, h2, canaryDir := forgedFleet(t)
			n := openWithUnsaved(t, h2)
			var l *store.Lease
			h1.e.store.View(func(tx *store.Tx) (err error) { l, err = tx.GetLease("docs"); return })
			if l == nil {
				t.Fatal("no lease of docs")
			}
			mod(l)
			sqlPut(t, h1, []byte("l:docs\x00"), l)
			var err error
			withTimeout(t, 2*time.Minute, "close", func(ctx context.Context) {
				err = noPanic(t, "close", func() error { _, err := h2.e.CloseSandbox(ctx, "docs", CloseOptions{}); return err })
			})
			t.Logf("close: %v", err)
			var fe *store.FencedError
			if !errors.As(err, &fe) {
				t.Errorf("close under a forged lease (%s): %v, want fenced", name, err)
			}
			if !unsavedKept(t, h2, "docs", n, "home/user/Documents/unsaved.txt", "unsaved work\n") {
				t.Errorf("session %d's unsaved work is neither in its root nor in the recovery area", n)
			}
			withTimeout(t, 2*time.Minute, "open", func(ctx context.Context) {
				err = noPanic(t, "open", func() error { _, err := h2.e.OpenSandbox(ctx, "docs"); return err })
			})
			t.Logf("open again: %v", err)
			assertCanaryDir(t, canaryDir)
		})
	}
}

// sqlPut writes v at key k of table kv as the store encodes a row (one
// version byte, then gob: store/codec.go), by SQL from h: the store's API
// has no way to write an arbitrary lease or host row.
func sqlPut(t *testing.T, h *fixture, k []byte, v any) {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteByte(1)
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlConn(t, h).Exec(t.Context(), `INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`, k, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// Host rows forged for the victim's own id: a TTL of 0, of max int64,
// a last heartbeat far in the future, and (last) another state
// directory's root id. The victim's heartbeat and fleet hosts never panic
// or hang; the row naming another root makes the heartbeat refuse
// (HostIDTakenError) rather than take the id over. (Fails if HeartbeatFrom
// stopped comparing the row's root id with this directory's.)
func TestForged3HostRows(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	if err := h2.e.Heartbeat(0); err != nil {
		t.Fatal(err)
	}
	for _, mod := range []func(h *store.Host){
		func(h *store.Host) { h.TTL = 0 },
		func(h *store.Host) { h.TTL = math.MaxInt64 },
		func(h *store.Host) { h.LastSeen = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC); h.TTL = math.MaxInt64 },
		func(h *store.Host) { h.TTL = -time.Hour; h.First = time.Time{} },
	} {
		var h *store.Host
		h1.e.store.View(func(tx *store.Tx) (err error) { h, err = tx.GetHost("h2"); return })
		mod(h)
		sqlPut(t, h1, []byte("h:h2\x00"), h)
		err := noPanic(t, "heartbeat", func() error { return h2.e.Heartbeat(0) })
		if err != nil {
			t.Errorf("heartbeat after a forged row of h2: %v", err)
		}
		noPanic(t, "fleet hosts", func() error { _, _, _, err := h2.e.FleetHosts(); return err })
	}
	var h *store.Host
	h1.e.store.View(func(tx *store.Tx) (err error) { h, err = tx.GetHost("h2"); return })
	h.Root, h.LastSeen, h.TTL = "0123456789abcdef0123456789abcdef", time.Now(), time.Hour
	sqlPut(t, h1, []byte("h:h2\x00"), h)
	err := h2.e.Heartbeat(0)
	var taken *store.HostIDTakenError
	if !errors.As(err, &taken) {
		t.Errorf("heartbeat of h2 while the ledger names another root for h2: %v, want HostIDTakenError", err)
	}
	_, err = h2.e.OpenSandbox(h2.ctx, "docs")
	if !errors.As(err, &taken) {
		t.Errorf("open on h2 while the ledger names another root for h2: %v, want HostIDTakenError", err)
	}
}

// Review with forged records: a pending index entry whose record is gone,
// a record stored under one id that says it is another, a record whose
// Sandbox climbs out of the lock directory, one of another sandbox in
// docs' queue. review ls / show / approve / reject on the victim return
// errors or decide ledger rows, never panic or hang, and create no lock
// file outside ROOT/locks. (Fails if lockSandbox stopped refusing an
// invalid name: the approve would create the canary directory's "pwned".)
func TestForged3ReviewRecords(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	if err := h1.e.CreateSandbox("secret", "base"); err != nil {
		t.Fatal(err)
	}
	climb, err := filepath.Rel(filepath.Join(h2.e.root, "locks"), filepath.Join(canaryDir, "pwned"))
	if err != nil {
		t.Fatal(err)
	}
	blob, n := putBlob(t, h1, "forged\n")
	var ids []uint64
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		now := time.Now().UTC()
		mk := func(sandbox, p string) error {
			id, err := tx.NextRecordID()
			if err != nil {
				return err
			}
			ids = append(ids, id)
			return tx.PutRecord(&store.Record{ID: id, Sandbox: sandbox, Session: 1, Path: p, Kind: change.KindAdd, Type: change.TypeFile,
				Digest: blob, Size: n, Mode: 0o644, Status: change.StatusPending, Review: change.ReviewBefore, Created: now, Mtime: now})
		}
		for _, c := range [][2]string{{climb, "/home/user/Documents/a"}, {"secret", "/home/user/Documents/b"}, {"docs", "/home/user/Documents/c"}} {
			if err := mk(c[0], c[1]); err != nil {
				return err
			}
		}
		return nil
	})
	conn := sqlConn(t, h1)
	// A pending index entry (all sandboxes' and docs') for a record that
	// is not there, and record ids[2]'s bytes copied under another id.
	missing := ids[len(ids)-1] + 1000
	if _, err := conn.Exec(t.Context(), `INSERT INTO kv (k, v) VALUES ($1, ''::bytea), ($2, ''::bytea)`,
		append([]byte("rq:"), be64(missing)...), append([]byte("rQ:docs\x00"), be64(missing)...)); err != nil {
		t.Fatal(err)
	}
	collide := ids[len(ids)-1] + 2000
	if _, err := conn.Exec(t.Context(), `INSERT INTO kv (k, v) SELECT $1, v FROM kv WHERE k = $2`,
		append([]byte("r:"), be64(collide)...), append([]byte("r:"), be64(ids[2])...)); err != nil {
		t.Fatal(err)
	}
	withTimeout(t, time.Minute, "review", func(ctx context.Context) {
		noPanic(t, "review ls", func() error {
			recs, err := h2.e.ReviewList(ctx, "")
			t.Logf("review ls: %d records, %v", len(recs), err)
			recs, err = h2.e.ReviewList(ctx, "docs")
			t.Logf("review ls docs: %d records, %v", len(recs), err)
			return nil
		})
		for _, id := range append(append([]uint64{}, ids...), missing, collide) {
			noPanic(t, "review show", func() error { _, err := h2.e.ReviewShow(id); t.Logf("review show r%d: %v", id, err); return nil })
		}
		noPanic(t, "review approve", func() error {
			_, err := h2.e.Approve(ctx, []uint64{ids[0]}, "ok")
			t.Logf("approve r%d (sandbox %q): %v", ids[0], climb, err)
			_, err = h2.e.Reject(ctx, []uint64{ids[0], ids[1]}, "no")
			t.Logf("reject: %v", err)
			_, err = h2.e.Approve(ctx, []uint64{collide}, "ok")
			t.Logf("approve r%d (a copy of r%d): %v", collide, ids[2], err)
			_, err = h2.e.ApproveAll(ctx, "docs", "all")
			t.Logf("approve --all docs: %v", err)
			return nil
		})
		noPanic(t, "prune", func() error { _, err := h2.e.Prune(ctx, "docs", 0); t.Logf("prune: %v", err); return nil })
		noPanic(t, "history", func() error {
			_, err := h2.e.History(ctx, "docs", "/home/user/Documents/c")
			t.Logf("history: %v", err)
			return nil
		})
	})
	assertCanaryDir(t, canaryDir)
}

func be64(n uint64) []byte {
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = byte(n)
		n >>= 8
	}
	return b
}

// persisted cat and history on the victim of a record whose digest names
// a blob the attacker replaced (it shares the blob directory) with a
// symlink to a host file (the canary, whose digest the record gives) or
// with a FIFO: cat refuses both, never reads the host file and never
// hangs. (Fails if openBlobFile stopped opening with O_NOFOLLOW and
// O_NONBLOCK, or stopped refusing a file that is not regular.)
func TestForged3CatBlobNotAFile(t *testing.T) {
	h1, h2, canaryDir := forgedFleet(t)
	canary := filepath.Join(canaryDir, "canary")
	for _, c := range []string{"symlink", "fifo"} {
		t.Run(c, func(t *testing.T) {
			content := "host data\n" // the canary's content: the symlink's target hashes to the record's digest
			if c == "fifo" {
				content = "a fifo's record\n"
			}
			blob, n := putBlob(t, h1, content)
			p, err := h1.e.blobs.Path(blob)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(p)
			if c == "symlink" {
				err = os.Symlink(canary, p)
			} else {
				err = syscall.Mkfifo(p, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			path := "/home/user/Documents/" + c
			forgeRecords(t, h1, "docs", &store.Record{Path: path, Type: change.TypeFile, Digest: blob, Size: n})
			var got []byte
			withTimeout(t, time.Minute, "persisted cat", func(ctx context.Context) {
				r, verr := h2.e.PersistedVersion(ctx, "docs", path, 0)
				if verr != nil {
					err = verr
					return
				}
				rc, oerr := h2.e.OpenRecord(r)
				if oerr != nil {
					err = oerr
					return
				}
				defer rc.Close()
				got, err = io.ReadAll(rc)
			})
			t.Logf("cat %s: %q %v", path, got, err)
			if err == nil {
				t.Errorf("persisted cat of a record whose blob is a %s gave %q without an error", c, got)
			}
			if strings.Contains(string(got), "host data") {
				t.Errorf("persisted cat read the host file behind a planted symlink: %q", got)
			}
			os.Remove(p)
		})
	}
	assertCanaryDir(t, canaryDir)
}

// Audit heads forged with the wrong length (the fleet chain's, a sandbox
// chain's) and one claiming entry max uint64: fleet checkpoint on the
// victim fails with an error, audit verify reports a problem; neither
// panics nor hangs. (Fails if Checkpoint or readHeads stopped checking
// a head's length: v[8:] of a 3-byte head panics.)
func TestForged3CheckpointHeads(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	conn := sqlConn(t, h1)
	for _, c := range []struct {
		name string
		k, v []byte
	}{
		{"short sandbox head", []byte("aH:docs\x00"), []byte{1, 2, 3}},
		{"huge sandbox head", []byte("aH:docs\x00"), append(be64(math.MaxUint64), make([]byte, 32)...)},
		{"short fleet head", []byte("ah"), []byte{9}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := conn.Exec(t.Context(), `INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`, c.k, c.v); err != nil {
				t.Fatal(err)
			}
			var (
				seq    uint64
				chains int
				err    error
				p      *store.AuditProblem
			)
			withTimeout(t, time.Minute, "fleet checkpoint", func(ctx context.Context) {
				err = noPanic(t, "fleet checkpoint", func() error { seq, chains, err = h2.e.Checkpoint(); return err })
			})
			t.Logf("checkpoint: %d %d %v", seq, chains, err)
			if strings.HasPrefix(c.name, "short") && err == nil {
				t.Errorf("checkpoint recorded a head of %d bytes", len(c.v))
			}
			withTimeout(t, time.Minute, "audit verify", func(ctx context.Context) {
				err = noPanic(t, "audit verify", func() error { p, err = h2.e.store.VerifyAudit(ctx); return err })
			})
			t.Logf("audit verify: %+v %v", p, err)
			if p == nil && err == nil {
				t.Errorf("audit verify passed over a forged head (%s)", c.name)
			}
		})
	}
}
