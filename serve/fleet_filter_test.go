package serve

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/persist"
)

// TestHostFilter: host= keeps the records and audit entries written on
// one host; a server scoped with Config.Host or Config.Sandbox ignores
// what a request asks instead. On badger and on PostgreSQL (a fleet's
// ledger).
func TestHostFilter(t *testing.T) {
	t.Run("badger", func(t *testing.T) { testHostFilter(t, newWorld(t, 0), false) })
	t.Run("postgres", func(t *testing.T) { testHostFilter(t, newWorldOn(t, 0, pgtest.URL(t)), true) })
}

// testHostFilter checks the filters on w; shared says the ledger is a
// fleet's, where every audit entry names the host that wrote it.
func testHostFilter(t *testing.T, w *world, shared bool) {
	b, err := os.ReadFile(filepath.Join(w.root, "host-id"))
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimSpace(string(b))
	total := len(w.byKey)
	if total == 0 {
		t.Fatal("the world has no pending records")
	}
	c := w.client().login()
	api := func(c *client, q string) int {
		t.Helper()
		resp := c.get("/api/review?" + q)
		var recs []struct{ ID uint64 }
		if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/review?%s: %s %v", q, resp.Status, err)
		}
		return len(recs)
	}
	audit := func(c *client, q string) int {
		t.Helper()
		return strings.Count(c.body(c.get("/audit?"+q)), "<tr><td>")
	}
	for q, want := range map[string]int{"": total, "host=" + host: total, "host=" + host + "&sandbox=docs": total} {
		if got := api(c, q); got != want {
			t.Errorf("/api/review?%s: %d records, want %d", q, got, want)
		}
	}
	// A host the ledger does not know is 404, as review ls --host and log
	// refuse it: not an empty queue that looks like nothing to review.
	for _, p := range []string{"/api/review?host=elsewhere", "/queue?host=elsewhere", "/audit?host=elsewhere"} {
		if resp := c.get(p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %s, want 404", p, resp.Status)
		}
	}
	all := audit(c, "")
	// On badger, sandbox.open and sandbox.close of both sessions name the
	// host; on a fleet's ledger every entry does.
	want := 4
	if shared {
		want = all
	}
	if got := audit(c, "host="+host); got != want || all <= 4 {
		t.Errorf("/audit?host=%s: %d entries (of %d), want %d", host, got, all, want)
	}

	scoped := func(cfg Config) *client {
		w2 := *w
		w2.srv, w2.ts = w.scopedServer(cfg)
		c := w2.client()
		if resp := c.get(w2.srv.LoginURL()); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login: %s", resp.Status)
		}
		return c
	}
	// (serve --host refuses a host the ledger does not know at start; a
	// server scoped to one anyway answers 404, never another host's data.)
	sc := scoped(Config{Host: "elsewhere"})
	for _, p := range []string{"/api/review?host=" + host, "/audit"} {
		if resp := sc.get(p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("scoped to an unknown host, %s: %s, want 404", p, resp.Status)
		}
	}
	sc = scoped(Config{Host: host, Sandbox: "docs"})
	if got := api(sc, "host=elsewhere"); got != total {
		t.Errorf("scoped to this host: %d records, want %d", got, total)
	}
}

// scopedServer starts another server over w's state with cfg's scope.
func (w *world) scopedServer(cfg Config) (*Server, *httptest.Server) {
	w.t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	cfg.Persist = persist.Options{Root: w.root, Store: w.store, LockTimeout: 300 * time.Millisecond}
	cfg.Reviewer, cfg.Addr = "alice", ts.Listener.Addr().String()
	srv, err := New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	ts.Config.Handler = srv
	ts.Start()
	w.t.Cleanup(ts.Close)
	return srv, ts
}
