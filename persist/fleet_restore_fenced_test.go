package persist

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// A host fenced while its user edited a letter puts the letter back into
// the sandbox's persisted state with `recover restore`: at once when no
// host took the sandbox over, or once the host that did has closed it.
// The record waits for review under exception "recover", the next open on
// the other host has it, and what that host persisted meanwhile stays.
// The restore is refused while the sandbox is open on the other host,
// naming it, and the other host, whose recovery area does not hold the
// session, says so.
func TestFleetRestoreOfFencedChanges(t *testing.T) {
	for _, takeover := range []bool{false, true} {
		name := "no takeover"
		if takeover {
			name = "after h2's takeover"
		}
		t.Run(name, func(t *testing.T) { testFleetRestoreOfFenced(t, takeover) })
	}
}

func testFleetRestoreOfFenced(t *testing.T, takeover bool) {
	h1, h2 := fleetFixtures(t)
	const letter, notes = "/home/user/Documents/letter.txt", "/home/user/Documents/notes.txt"
	root := h1.open()
	write(t, root, letter, "draft 1", 0o644)
	h1.close()
	root = h1.open()
	write(t, root, letter, "draft 2, not yet closed", 0o644)
	if _, err := h2.e.EvictHost("h1", "looked dead", true); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{letter: "draft 2, not yet closed"}
	if takeover {
		root2 := h2.open()
		write(t, root2, notes, "h2's notes", 0o644)
		want[notes] = "h2's notes"
	}
	_, err := h1.e.CloseSandbox(h1.ctx, "docs", CloseOptions{})
	var fenced *FencedSession
	if !errors.As(err, &fenced) || fenced.Session != 2 || fenced.Entries != 1 {
		t.Fatalf("h1's close after the eviction: %v", err)
	}
	restore := RestoreOptions{Paths: []string{letter}, Reason: "the draft h1 was fenced with"}
	if takeover {
		if _, err := h1.e.RecoverRestore(h1.ctx, "docs", restore); err == nil || !strings.Contains(err.Error(), "open on host h2") {
			t.Fatalf("restore while h2 has the sandbox open: %v, want it refused naming h2", err)
		}
		h2.close()
	}
	if _, err := h2.e.RecoverRestore(h2.ctx, "docs", restore); err == nil ||
		!strings.Contains(err.Error(), "letter.txt is not in the recovery area of docs on this host (h2); each host keeps its own") {
		t.Fatalf("h2, whose recovery area does not hold the session: %v, want nothing restored and the host named", err)
	}

	res, err := h1.e.RecoverRestore(h1.ctx, "docs", restore)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 1 || res.Records[0].Path != letter || res.Records[0].Exception != RecoverID ||
		res.Records[0].Status != change.StatusPending || res.Records[0].Kind != change.KindModify {
		t.Fatalf("restored %+v, want the letter modified, pending, under %s", res.Records, RecoverID)
	}
	var queued bool
	if err := h2.e.store.View(func(tx *store.Tx) error {
		r, err := tx.GetRecord(res.Records[0].Record)
		queued = err == nil && r.Status == change.StatusPending && r.Sandbox == "docs"
		return err
	}); err != nil || !queued {
		t.Fatalf("the restored record in the shared ledger: %v", err)
	}
	// It is h1's work, restored by h1: the --host filters say so on
	// either host, also after h2's takeover made the record's session
	// h2's.
	for _, h := range []*fixture{h1, h2} {
		var got string
		err := h.e.ReviewEachHost(h.ctx, "docs", 0, func(r *store.Record, host string) error {
			if r.ID == res.Records[0].Record {
				got = host
			}
			return nil
		})
		if err != nil || got != "h1" {
			t.Errorf("review ls on %s: the restored record's host is %q, %v; want h1", h.e.HostID(), got, err)
		}
		var r *store.Record
		if err := h.e.store.View(func(tx *store.Tx) (err error) { r, err = tx.GetRecord(res.Records[0].Record); return err }); err != nil {
			t.Fatal(err)
		}
		if host, err := h.e.HostOf().Record(r); err != nil || host != "h1" {
			t.Errorf("HostOf on %s: %q, %v; want h1", h.e.HostID(), host, err)
		}
	}

	root2 := h2.open()
	for path, content := range want {
		if b, err := os.ReadFile(filepath.Join(root2, path)); err != nil || string(b) != content {
			t.Errorf("%s on h2 after the restore: %q, %v; want %q", path, b, err, content)
		}
	}
	h2.close()
	if bad, err := h2.e.VerifyAudit(h2.ctx); err != nil || bad != nil {
		t.Fatalf("audit verify after the restore: %+v, %v", bad, err)
	}
	// The restored record is in effect by the records as by the index
	// (its session is the fenced one when nothing was closed since):
	// check agrees, and a reject takes it back out.
	if problems, err := h1.e.Check(h1.ctx); err != nil || len(problems) != 0 {
		t.Fatalf("check after the restore: %q, %v", problems, err)
	}
	if _, err := h1.e.Reject(h1.ctx, []uint64{res.Records[0].Record}, "not this draft"); err != nil {
		t.Fatal(err)
	}
	root2 = h2.open()
	if b, err := os.ReadFile(filepath.Join(root2, letter)); err != nil || string(b) != "draft 1" {
		t.Errorf("the letter after the restored draft was rejected: %q, %v; want draft 1", b, err)
	}
	h2.close()
	if problems, err := h1.e.Check(h1.ctx); err != nil || len(problems) != 0 {
		t.Fatalf("check after the reject: %q, %v", problems, err)
	}
	// rm takes the notes of who restored what with the records
	if err := h2.e.RemoveSandbox(h2.ctx, "docs", false, nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := h2.e.store.View(func(tx *store.Tx) error {
		return tx.ForEachMeta(h2.ctx, "restored-by/", func(string, string) error { n++; return nil })
	}); err != nil || n != 0 {
		t.Fatalf("%d restored-by notes after rm (%v), want none", n, err)
	}
}
