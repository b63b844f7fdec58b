package persist

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/spillway/spillway/store"
)

// TestCloseReportReprint: a closed sandbox's summary is re-printed from
// its typed report, with the persisted list rebuilt from the session's
// records; a session closed before reports re-prints from its JSON; an
// unreadable report is said, not hidden, and the close still answers.
func TestCloseReportReprint(t *testing.T) {
	f := newFixture(t, "overlayfs")
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	for i := range 50 {
		write(t, root, docs+fmt.Sprintf("/f%02d.txt", i), "x", 0o644)
	}
	first := f.close()
	again, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !again.AlreadyClosed || len(again.Persisted) != len(first.Persisted) || again.Discarded.Count != first.Discarded.Count ||
		again.Persisted[0].Path != first.Persisted[0].Path || again.Persisted[0].Digest == "" {
		t.Fatalf("re-print %+v\nfirst %+v", again, first)
	}
	var ses *store.Session
	f.e.store.View(func(tx *store.Tx) (err error) { ses, err = tx.GetSession("docs", 1); return })
	if len(ses.Report) == 0 || len(ses.Summary) != 0 || len(ses.Report) > 2000 {
		t.Fatalf("stored report %d bytes, JSON %d bytes", len(ses.Report), len(ses.Summary))
	}
	// An older store's JSON summary.
	js, _ := json.Marshal(&CloseSummary{Sandbox: "docs", Session: 1, Generation: 1, Persisted: []PersistedFile{{Path: "/old"}}})
	put := func(report, summary []byte) {
		t.Helper()
		if err := f.e.store.Update(func(tx *store.Tx) error {
			ses.Report, ses.Summary = report, summary
			return tx.PutSession(ses)
		}); err != nil {
			t.Fatal(err)
		}
	}
	put(nil, js)
	old, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{})
	if err != nil || len(old.Persisted) != 1 || old.Persisted[0].Path != "/old" {
		t.Fatalf("JSON summary re-print: %+v %v", old, err)
	}
	// A corrupt report.
	put([]byte{reportVersion, 0xff, 0x00}, nil)
	var warned []string
	f.e.warn = func(msg string) { warned = append(warned, msg) }
	bad, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{})
	if err != nil || !bad.AlreadyClosed || len(warned) != 1 {
		t.Fatalf("corrupt report: %+v %v, warned %q", bad, err, warned)
	}
}
