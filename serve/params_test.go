package serve

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestBadPageNumbers: a page number that is not a whole number (after=,
// limit=) is a 400 naming it on every page that takes one, not the first
// page shown as if nothing were wrong; a good one still serves the page.
func TestBadPageNumbers(t *testing.T) {
	w := newWorld(t, 0)
	c := w.client().login()
	for _, p := range []string{"/queue", "/next", "/audit", "/api/review"} {
		for _, bad := range []string{"x", "-1", "1e3", "18446744073709551616"} {
			resp := c.get(p + "?after=" + bad)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s?after=%s: status %d, want 400", p, bad, resp.StatusCode)
			}
		}
		if resp := c.get(p + "?after=0"); resp.StatusCode >= 400 {
			t.Errorf("%s?after=0: status %d", p, resp.StatusCode)
		}
	}
	resp := c.get("/api/review?limit=ten")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("/api/review?limit=ten: status %d, want 400", resp.StatusCode)
	}
	var e struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == "" {
		t.Errorf("/api/review?limit=ten: body is not a JSON error (%v)", err)
	}
	if resp := c.get("/api/review?limit=5000"); resp.StatusCode != http.StatusOK {
		t.Errorf("/api/review?limit=5000: status %d, want 200 (at most 1000 a page)", resp.StatusCode)
	}
	// a record id that is not one: the API's JSON error, 400
	resp = c.get("/api/record/xyz")
	e.Error = ""
	if err := json.NewDecoder(resp.Body).Decode(&e); resp.StatusCode != http.StatusBadRequest || err != nil || e.Error == "" {
		t.Errorf("/api/record/xyz: status %d, error %q (%v); want 400 and a JSON error", resp.StatusCode, e.Error, err)
	}
}

// TestBadFilterValues: a kind no record has, a history path that is not
// a clean absolute one (or none), a limit of 0 is a 400 naming
// it, and an unknown host or sandbox a 404, not an empty page that looks
// like "nothing pending" or "no versions recorded".
func TestBadFilterValues(t *testing.T) {
	w := newWorld(t, 0)
	c := w.client().login()
	for _, p := range []string{"/queue?kind=bogus", "/next?kind=Add", "/api/review?kind=A", "/history?sandbox=docs&path=relative", "/history?sandbox=docs&path=/a/../b",
		"/history?sandbox=docs", "/history?path=/home/user/Documents/a.txt", "/api/review?limit=0"} {
		if resp := c.get(p); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", p, resp.StatusCode)
		}
	}
	// A host or sandbox the ledger does not know is 404, as review ls and
	// log refuse them, not an empty queue or log.
	for _, p := range []string{"/queue?host=nosuch", "/api/review?host=nosuch", "/audit?sandbox=nosuch", "/audit?host=nosuch"} {
		if resp := c.get(p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/queue?kind=add", "/api/review?kind=delete", "/history?sandbox=docs&path=/home/user/Documents/a.txt", "/api/review?limit=1", "/audit?sandbox=docs"} {
		if resp := c.get(p); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d, want 200", p, resp.StatusCode)
		}
	}
}
