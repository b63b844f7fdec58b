package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/pgtest"
)

// TestFleetCloseDuringFailover: the ledger is a PostgreSQL primary with a
// synchronous standby, named to both hosts by one URL listing both
// servers with target_session_attrs=read-write. h1 closes a session
// (acknowledged: on both servers), then a second one whose commit the
// primary writes but the standby never receives (the standby detached,
// the commit waiting for its confirmation), and the primary crashes.
// While no server takes writes, h2's commands fail as "the database is
// unavailable", exit 1. Then the standby is promoted: the close, whose
// outcome it could not know, reads its session back on the new primary,
// finds it still closing (the commit was lost with the old primary,
// never acknowledged) and commits again. h2 then opens the sandbox with
// the second session's files; `audit verify` and `check` pass.
func TestFleetCloseDuringFailover(t *testing.T) {
	pair, w, f := failoverHosts(t)
	must, h1env, h2env := f.must, f.h1, f.h2
	v2 := secondSessionOpen(w, f)

	// Hold the close's commit at its last round trip (only the commit
	// writes the sandbox's audit-chain head), detach the standby, then let
	// the commit go: the primary writes it and waits for the standby.
	held := closeBehindLock(t, w, pair.PrimaryURL("ledger"), h1env)
	cmd, out, errb := held.cmd, &held.out, &held.errb
	if err := pair.DetachStandby(); err != nil {
		t.Fatal(err)
	}
	if err := held.lock.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := pair.WaitForSyncRepWaiter(30 * time.Second); err != nil {
		t.Fatalf("%v; the close: %s%s", err, out.String(), errb.String())
	}
	if err := pair.CrashPrimary(); err != nil {
		t.Fatal(err)
	}

	// No server takes writes: h2's commands fail at once, saying why.
	r := w.sw(h2env, "ls")
	t.Logf("ls on h2 with no server taking writes: exit %d\n%s", r.code, r.stderr)
	if r.code != 1 || !strings.Contains(r.stderr, "the database is unavailable") || !strings.Contains(r.stderr, "read only") {
		t.Fatalf("ls on h2 while the primary is down and the standby not promoted: exit %d %q, want exit 1 naming the database unavailable and the read-only standby", r.code, r.stderr)
	}
	if cmd.ProcessState != nil {
		t.Fatalf("the close ended before the standby was promoted: %s%s", out.String(), errb.String())
	}
	time.Sleep(time.Second)
	if err := pair.Promote(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("close across the failover: %v\n%s%s: it should have read its session back on the promoted standby and committed again", err, out.String(), errb.String())
	}
	t.Logf("close across the failover:\n%s%s", out.String(), errb.String())

	// The promoted standby holds the second session whole, once.
	if r := w.sw(h1env, "close", "docs"); r.code != 0 {
		t.Fatalf("close again after the failover: exit %d %s", r.code, r.stderr)
	}
	st := docsOf(t, must(h2env, "persisted", "ls", "docs", "--json"))
	if len(st) != len(v2) || !sameContent(w, h2env, st, v2) {
		t.Fatalf("after the failover the ledger holds %v, want version 2 of %d documents", st, len(v2))
	}
	if log := must(h2env, "log", "--sandbox", "docs", "--json"); strings.Count(log, `"sandbox.close"`) != 2 {
		t.Errorf("the ledger's log has %d closes of docs, want 2 (the lost commit redone once):\n%s", strings.Count(log, `"sandbox.close"`), log)
	}
	must(h2env, "audit", "verify")
	must(h2env, "check")
	must(h2env, "open", "docs")
	for p, content := range v2 {
		if b, err := os.ReadFile(f.h2mnt(p)); err != nil || string(b) != content {
			t.Errorf("opened on h2: %s = %q (%v), want %q", p, b, err, content)
		}
	}
	must(h2env, "close", "docs")
}

// TestFleetCommitLostByFailover: the same ledger with its standby
// detached and the primary acknowledging commits alone (asynchronous
// replication). h1 closes its second session, acknowledged, and the
// primary crashes before the standby has it: the promoted standby shows
// that session still open on h1, whose root is gone. h1's open and close
// say the ledger lost the commit (naming the generation it committed)
// instead of failing on the missing root; h2 is refused (the lease is
// h1's). `close --abandon` needs a reason, then ends the session in the
// ledger (audited) and keeps the five documents the lost commit had
// persisted in h1's recovery area (reason ledger-lost); `recover restore`
// puts them back, reviewable, and h2 opens the sandbox with them. h1's
// close then says the sandbox is closed (no fence).
func TestFleetCommitLostByFailover(t *testing.T) {
	pair, w, f := failoverHosts(t)
	must, h1env, h2env := f.must, f.h1, f.h2
	v2 := secondSessionOpen(w, f)
	loseFromNowOn(t, pair)
	if out := must(h1env, "close", "docs"); !strings.Contains(out, "generation 2") {
		t.Fatalf("close before the failover: %s", out)
	}
	failover(t, pair)

	for _, cmd := range [][]string{{"open", "docs"}, {"close", "docs"}} {
		r := w.sw(h1env, cmd...)
		for _, want := range []string{"the ledger lost that commit", "committed generation 2", "session 2 open on this host (h1) at generation 1", "spillway close docs --abandon --reason TEXT"} {
			if r.code != 1 || !strings.Contains(r.stderr, want) {
				t.Fatalf("%s on h1 after the lost commit: exit %d %q, want exit 1 saying %q", cmd[0], r.code, r.stderr, want)
			}
		}
	}
	if r := w.sw(h2env, "open", "docs"); r.code != 1 || !strings.Contains(r.stderr, "in use on host h1") {
		t.Fatalf("open on h2 while the ledger shows h1's session: exit %d %q", r.code, r.stderr)
	}
	if r := w.sw(h1env, "close", "docs", "--abandon"); r.code != 2 || !strings.Contains(r.stderr, "reason") {
		t.Fatalf("close --abandon without a reason: exit %d %q, want 2", r.code, r.stderr)
	}
	out := must(h1env, "close", "docs", "--abandon", "--reason", "the ledger lost session 2 in a failover", "--json")
	var ab struct {
		Session, Generation uint64
		Kept                int64
	}
	if err := json.Unmarshal([]byte(out), &ab); err != nil || ab.Session != 2 || ab.Generation != 1 || ab.Kept != int64(len(v2)) {
		t.Fatalf("close --abandon: %s (%v), want session 2 closed at generation 1 with the %d documents kept", out, err, len(v2))
	}
	var kept []struct{ Path, Reason string }
	if err := json.Unmarshal([]byte(must(h1env, "recover", "ls", "docs", "--session", "2", "--json")), &kept); err != nil {
		t.Fatal(err)
	}
	lost := map[string]bool{}
	for _, k := range kept {
		if k.Reason == "ledger-lost" {
			lost[k.Path] = true
		}
	}
	paths := []string{}
	for p := range v2 {
		if !lost[p] {
			t.Errorf("recover ls after --abandon: %s is not kept as ledger-lost (%v)", p, kept)
		}
		paths = append(paths, p)
	}
	if len(lost) != len(v2) {
		t.Errorf("recover ls lists %d ledger-lost entries, want %d: %v", len(lost), len(v2), lost)
	}
	must(h1env, append(append([]string{"recover", "restore", "docs"}, paths...), "--session", "2", "--reason", "lost in the failover")...)
	st := docsOf(t, must(h2env, "persisted", "ls", "docs", "--json"))
	if !sameContent(w, h2env, st, v2) {
		t.Fatalf("after the restore the ledger holds %v, want version 2 of the documents", st)
	}
	// The restored records take the abandoned session's number (nothing
	// was closed since): in effect by the records as by the index.
	must(h1env, "check")
	if log := must(h2env, "log", "--sandbox", "docs"); !strings.Contains(log, "session.abandon") || !strings.Contains(log, "lost_generation=2") {
		t.Errorf("the log does not show the abandon:\n%s", log)
	}
	must(h2env, "audit", "verify")
	must(h2env, "open", "docs")
	for p, content := range v2 {
		if b, err := os.ReadFile(f.h2mnt(p)); err != nil || string(b) != content {
			t.Errorf("opened on h2: %s = %q (%v), want %q", p, b, err, content)
		}
	}
	if r := w.sw(h2env, "close", "docs", "--abandon", "--reason", "no"); r.code != 1 || !strings.Contains(r.stderr, "has its root on this host") {
		t.Fatalf("close --abandon of a session with its root here: exit %d %q, want 1, refused", r.code, r.stderr)
	}
	if r := w.sw(h2env, "close", "docs", "--reason", "no"); r.code != 2 {
		t.Fatalf("close --reason without --abandon: exit %d %q, want 2", r.code, r.stderr)
	}
	must(h2env, "close", "docs")
	if r := w.sw(h1env, "close", "docs"); r.code != 0 || !strings.Contains(r.stdout, "already closed") {
		t.Errorf("close on h1 after the abandon: exit %d %q %q, want already closed", r.code, r.stdout, r.stderr)
	}
}

// failoverHosts starts a replicated ledger, two hosts on it with the
// image imported, and sandbox docs with an exception for Documents; env
// is added to both hosts' environments.
func failoverHosts(t *testing.T, env ...string) (*pgtest.Pair, *world, *fleetHosts) {
	requireRoot(t)
	pair := pgtest.NewPair(t)
	if err := pair.CreateDB("ledger"); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, sharedRootfs(t))
	f := twoHostsOn(t, w, pair.URL("ledger"))
	f.h1, f.h2 = append(f.h1, env...), append(f.h2, env...)
	f.must(f.h1, "image", "import", "base", w.rootfs)
	f.must(f.h2, "image", "import", "base", w.rootfs)
	f.must(f.h1, "create", "docs", "--image", "base")
	f.must(f.h1, "exception", "add", "docs", "/home/user/Documents/**", "--reason", "documents")
	return pair, w, f
}

// secondSessionOpen closes h1's first session of docs with version 1 of
// the documents and opens its second with version 2 written, which it
// returns.
func secondSessionOpen(w *world, f *fleetHosts) map[string]string {
	f.must(f.h1, "open", "docs")
	w.writeDocs(1)
	f.must(f.h1, "close", "docs")
	f.must(f.h1, "open", "docs")
	return w.writeDocs(2)
}

// loseFromNowOn makes every later commit exist on the primary alone (the
// standby detached, commits acknowledged without it), and failover
// crashes the primary and promotes the standby.
func loseFromNowOn(t *testing.T, pair *pgtest.Pair) {
	t.Helper()
	if err := pair.DetachStandby(); err != nil {
		t.Fatal(err)
	}
	if err := pair.Async(); err != nil {
		t.Fatal(err)
	}
}

func failover(t *testing.T, pair *pgtest.Pair) {
	t.Helper()
	if err := pair.CrashPrimary(); err != nil {
		t.Fatal(err)
	}
	if err := pair.Promote(); err != nil {
		t.Fatal(err)
	}
}

// TestFleetAbandonKeepsALaterSession: the failover loses h1's close of
// session 2 and its open of session 3, in which the user has unsaved
// work. `close --abandon` ends session 2 but keeps the open-session
// journal naming session 3, so h1's next command (a close, or an open)
// fences session 3's root into the recovery area instead of removing it;
// an open is refused while that session would have its number reused,
// until the work is restored and the session purged.
func TestFleetAbandonKeepsALaterSession(t *testing.T) {
	for _, next := range []string{"close", "open"} {
		t.Run(next, func(t *testing.T) { abandonKeepsALaterSession(t, next) })
	}
}

func abandonKeepsALaterSession(t *testing.T, next string) {
	pair, w, f := failoverHosts(t)
	secondSessionOpen(w, f)
	loseFromNowOn(t, pair)
	f.must(f.h1, "close", "docs")
	f.must(f.h1, "open", "docs")
	if err := os.WriteFile(w.mnt("/home/user/Documents/unsaved.txt"), []byte("unsaved work"), 0o644); err != nil {
		t.Fatal(err)
	}
	failover(t, pair)
	f.must(f.h1, "close", "docs", "--abandon", "--reason", "lost in a failover")
	refused := func(r result) {
		t.Helper()
		if r.code != 1 || !strings.Contains(r.stderr, "holds session 3, which the ledger (last session 2) does not account for") || !strings.Contains(r.stderr, "spillway recover purge docs --session 3") {
			t.Fatalf("open with session 3 in the recovery area: exit %d %q, want 1, refused", r.code, r.stderr)
		}
	}
	if r := w.sw(f.h1, next, "docs"); next == "open" {
		refused(r)
	} else if r.code != 0 {
		t.Fatalf("close after the abandon: exit %d %q", r.code, r.stderr)
	}
	if ls := f.must(f.h1, "recover", "ls", "docs", "--json"); !strings.Contains(ls, "/home/user/Documents/unsaved.txt") {
		t.Fatalf("session 3's unsaved work is not in the recovery area after the abandon of session 2 and a %s:\n%s", next, ls)
	}
	refused(w.sw(f.h1, "open", "docs"))
	f.must(f.h1, "recover", "restore", "docs", "/home/user/Documents/unsaved.txt", "--session", "3", "--reason", "unsaved in a lost session")
	f.must(f.h1, "recover", "purge", "docs", "--session", "3")
	f.must(f.h1, "open", "docs")
	if b, err := os.ReadFile(w.mnt("/home/user/Documents/unsaved.txt")); err != nil || string(b) != "unsaved work" {
		t.Errorf("after the restore the next session shows unsaved.txt = %q (%v)", b, err)
	}
	f.must(f.h1, "close", "docs")
}

// TestFleetLostCommitTakenOver: h1 (TTL 1 s) loses its close of session 2
// in the failover and is not live when h2 opens the sandbox, taking it
// over. h1's close then says the ledger lost its commit (not "nothing
// was persisted") and keeps the documents that commit persisted.
func TestFleetLostCommitTakenOver(t *testing.T) {
	for _, first := range []string{"close", "open"} {
		t.Run(first, func(t *testing.T) { lostCommitTakenOver(t, first) })
	}
}

// lostCommitTakenOver is TestFleetLostCommitTakenOver with h1's first
// command after the takeover: a close fails naming the lost commit, an
// open warns of it and goes on.
func lostCommitTakenOver(t *testing.T, first string) {
	pair, w, f := failoverHosts(t)
	f.must(f.h1, "fleet", "agent", "--ttl", "1s", "--once")
	v2 := secondSessionOpen(w, f)
	loseFromNowOn(t, pair)
	f.must(f.h1, "close", "docs")
	failover(t, pair)
	time.Sleep(1500 * time.Millisecond) // past h1's TTL
	f.must(f.h2, "open", "docs")
	f.must(f.h2, "close", "docs")
	r := w.sw(f.h1, first, "docs")
	if want := map[string]int{"close": 1, "open": 0}[first]; r.code != want || !strings.Contains(r.stderr, "had committed generation 2, which the ledger lost") {
		t.Fatalf("%s on h1 after the takeover: exit %d %q, want %d naming the lost commit", first, r.code, r.stderr, want)
	}
	if first == "open" {
		f.must(f.h1, "close", "docs")
	}
	ls := f.must(f.h1, "recover", "ls", "docs", "--session", "2", "--json")
	for p := range v2 {
		if !strings.Contains(ls, `"path": "`+p+`"`) || !strings.Contains(ls, "ledger-lost") {
			t.Errorf("recover ls --session 2 on h1 lacks %s as ledger-lost:\n%s", p, ls)
		}
	}
}

// TestFleetLostCommitKeptFromBlobs: when a lost close's recovery tree
// does not hold what it persisted (on overlay a session that refused and
// discarded nothing keeps no tree; the native snapshotter keeps only what
// was refused or discarded), the close's note lists the persisted files
// and their blobs, and `close --abandon` copies them from the blob
// directory into the recovery area, digests checked, for recover restore.
func TestFleetLostCommitKeptFromBlobs(t *testing.T) {
	for _, tc := range []struct {
		name, snapshotter string
		junk              bool // also write files that are discarded or refused
	}{
		{"overlayfs-only-documents", "overlayfs", false},
		{"native", "native", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pair, w, f := failoverHosts(t, "SPILLWAY_SNAPSHOTTER="+tc.snapshotter)
			write := func(v int) map[string]string {
				if tc.junk {
					return w.writeDocs(v)
				}
				docs := map[string]string{}
				for i := range 3 {
					p := fmt.Sprintf("/home/user/Documents/only%d.txt", i)
					docs[p] = fmt.Sprintf("document %d version %d", i, v)
					if err := os.WriteFile(w.mnt(p), []byte(docs[p]), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return docs
			}
			f.must(f.h1, "open", "docs")
			write(1)
			f.must(f.h1, "close", "docs")
			f.must(f.h1, "open", "docs")
			v2 := write(2)
			loseFromNowOn(t, pair)
			f.must(f.h1, "close", "docs")
			failover(t, pair)
			out := f.must(f.h1, "close", "docs", "--abandon", "--reason", "lost in a failover", "--json")
			var ab struct{ Kept int64 }
			if err := json.Unmarshal([]byte(out), &ab); err != nil || ab.Kept != int64(len(v2)) {
				t.Fatalf("close --abandon: %s (%v), want the %d documents kept", out, err, len(v2))
			}
			paths := []string{}
			for p := range v2 {
				paths = append(paths, p)
			}
			f.must(f.h1, append(append([]string{"recover", "restore", "docs"}, paths...), "--session", "2", "--reason", "lost in the failover")...)
			ls := f.must(f.h2, "persisted", "ls", "docs", "--json")
			if st := docsOf(t, ls); !sameContent(w, f.h2, st, v2) {
				t.Fatalf("after the restore the ledger holds %v, want version 2 of the documents", st)
			}
			// The copies carry the recorded mode (0644 as written), not
			// the 0600 they are created with.
			var recs []struct{ Path, Mode string }
			if err := json.Unmarshal([]byte(ls), &recs); err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if _, ok := v2[r.Path]; ok && r.Mode != "0644" {
					t.Errorf("restored %s has mode %s, want 0644 as the lost commit recorded", r.Path, r.Mode)
				}
			}
		})
	}
}

// TestFleetAbandonWithTwoLostCloses: the failover loses h1's closes of
// sessions 2 and 3. --abandon of session 2 would let the next open reuse
// session 3's number: it refuses, changing nothing, after keeping what
// session 3's lost commit persisted (recover ls shows it); once session 3
// is purged it runs, and keeps what session 2's lost commit persisted
// even though session 3's close removed session 2's recovery directory
// (the default retention): a document only session 2 wrote comes back.
func TestFleetAbandonWithTwoLostCloses(t *testing.T) {
	pair, w, f := failoverHosts(t)
	secondSessionOpen(w, f)
	const only2 = "/home/user/Documents/only-in-session-2.txt"
	if err := os.WriteFile(w.mnt(only2), []byte("written in session 2 only"), 0o644); err != nil {
		t.Fatal(err)
	}
	loseFromNowOn(t, pair)
	f.must(f.h1, "close", "docs")
	f.must(f.h1, "open", "docs")
	v3 := w.writeDocs(3)
	f.must(f.h1, "close", "docs")
	failover(t, pair)
	r := w.sw(f.h1, "close", "docs", "--abandon", "--reason", "lost in a failover")
	if r.code != 1 || !strings.Contains(r.stderr, "holds sessions [3] of docs, after session 2") || !strings.Contains(r.stderr, "spillway recover purge docs --session N") {
		t.Fatalf("--abandon with session 3 lost too: exit %d %q, want 1, refused", r.code, r.stderr)
	}
	ls := f.must(f.h1, "recover", "ls", "docs", "--session", "3", "--json")
	for p := range v3 {
		if !strings.Contains(ls, `"path": "`+p+`"`) {
			t.Errorf("recover ls --session 3 lacks %s, which its lost commit persisted:\n%s", p, ls)
		}
	}
	f.must(f.h1, "recover", "purge", "docs", "--session", "3")
	var ab struct {
		LostGeneration uint64 `json:"lost_generation"`
		Kept           int64  `json:"kept"`
	}
	if err := json.Unmarshal([]byte(f.must(f.h1, "close", "docs", "--abandon", "--reason", "lost in a failover", "--json")), &ab); err != nil {
		t.Fatal(err)
	}
	if ab.LostGeneration != 2 || ab.Kept != 6 {
		t.Errorf("--abandon of session 2: lost generation %d, kept %d; want 2 and 6 (five documents and %s)", ab.LostGeneration, ab.Kept, only2)
	}
	ls = f.must(f.h1, "recover", "ls", "docs", "--session", "2", "--json")
	if !strings.Contains(ls, `"path": "`+only2+`"`) {
		t.Errorf("%s, which only session 2's lost commit persisted, is not kept:\n%s", only2, ls)
	}
	f.must(f.h1, "open", "docs")
	f.must(f.h1, "close", "docs")
}
