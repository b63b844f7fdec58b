package serve

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/lock"
	"github.com/spillway/spillway/persist"
)

// checkHeaders asserts the security headers every response carries.
func checkHeaders(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	h := resp.Header
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("%s: Content-Security-Policy %q allows inline script", what, csp)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options = %q", what, h.Get("X-Content-Type-Options"))
	}
	if ct := h.Get("Content-Type"); ct == "" {
		t.Errorf("%s: no Content-Type", what)
	}
}

func TestAuth(t *testing.T) {
	w := newWorld(t, 0)
	anon := w.client()
	for _, p := range []string{"/", "/queue", "/record/1", "/static/app.js", "/audit"} {
		resp := anon.get(p)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a session: %s, want 401", p, resp.Status)
		}
		checkHeaders(t, "anonymous "+p, resp)
	}
	if resp := anon.get("/login?token=" + strings.Repeat("0", 64)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %s, want 401", resp.Status)
	}
	if resp := anon.get("/login"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %s, want 401", resp.Status)
	}

	login := w.srv.LoginURL()
	c := w.client()
	resp := c.get(login)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %s to %q, want 303 to /", resp.Status, resp.Header.Get("Location"))
	}
	checkHeaders(t, "login", resp)
	var ck *http.Cookie
	for _, x := range resp.Cookies() {
		if x.Name == w.srv.cookieName() {
			ck = x
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict", ck)
	}
	// The token works once: another browser cannot reuse it.
	if resp := w.client().get(login); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("token reuse: %s, want 401", resp.Status)
	}
	c.login2()
	for _, p := range []string{"/", "/queue", "/exceptions", "/audit", "/static/app.js", "/static/app.css",
		fmt.Sprintf("/record/%d", w.byKey[noteName]), fmt.Sprintf("/history?sandbox=docs&path=%s", url.QueryEscape(noteName))} {
		resp := c.get(p)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", p, resp.Status)
		}
		checkHeaders(t, p, resp)
	}
	if ct := c.get("/static/app.js").Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("app.js served as %q", ct)
	}

	// Wrong Host (DNS rebinding): refused even with the cookie.
	req, _ := http.NewRequest(http.MethodGet, w.ts.URL+"/queue", nil)
	req.Host = "evil.example:80"
	if resp := c.do(req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("wrong Host: %s, want 403", resp.Status)
	}

	// State-changing requests need the CSRF token and the same origin.
	id := w.byKey[noteName]
	approve := fmt.Sprintf("/record/%d/approve", id)
	cases := []struct {
		what   string
		form   url.Values
		header map[string]string
	}{
		{"no csrf", url.Values{}, nil},
		{"wrong csrf", url.Values{"csrf": {strings.Repeat("a", 64)}}, nil},
		{"cross origin", url.Values{"csrf": {c.csrf}}, map[string]string{"Origin": "http://evil.example"}},
		{"cross site", url.Values{"csrf": {c.csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
	}
	for _, tc := range cases {
		resp := c.post(approve, tc.form, tc.header)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %s, want 403", tc.what, resp.Status)
		}
		checkHeaders(t, tc.what, resp)
	}
	if resp := anon.post(approve, url.Values{"csrf": {c.csrf}}, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("post without a session: %s, want 401", resp.Status)
	}
	if r := w.record(id); r.Status != change.StatusPending {
		t.Fatalf("a refused request changed r%d to %s", id, r.Status)
	}
	// GET never changes anything.
	if resp := c.get(approve); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %s, want 405", approve, resp.Status)
	}
	resp = c.post(approve, url.Values{"csrf": {c.csrf}}, map[string]string{"Origin": w.ts.URL})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve with token and origin: %s", resp.Status)
	}
	if r := w.record(id); r.Status != change.StatusApproved {
		t.Fatalf("r%d is %s after approve", id, r.Status)
	}
	// Deciding it again is a conflict, not a server error.
	resp = c.post(approve, url.Values{"csrf": {c.csrf}}, map[string]string{"Origin": w.ts.URL})
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("approve twice: %s, want 409", resp.Status)
	}
}

// login2 reads the CSRF token of an already logged-in client.
func (c *client) login2() {
	c.w.t.Helper()
	body := c.body(c.get("/queue"))
	i := strings.Index(body, `name="csrf" value="`)
	if i < 0 {
		c.w.t.Fatalf("no csrf token:\n%s", body)
	}
	rest := body[i+len(`name="csrf" value="`):]
	c.csrf = rest[:strings.IndexByte(rest, '"')]
}

func TestHostileNamesAndContentsEscaped(t *testing.T) {
	w := newWorld(t, 0)
	c := w.client().login()
	pages := []string{"/queue", "/audit", "/exceptions"}
	for _, p := range []string{scriptName, imgName, ctrlName, badUTF8Name, noteName, svgName} {
		if w.byKey[p] == 0 {
			t.Fatalf("no pending record of %q: %v", p, w.byKey)
		}
		pages = append(pages, fmt.Sprintf("/record/%d", w.byKey[p]), "/history?sandbox=docs&path="+url.QueryEscape(p))
	}
	for _, p := range pages {
		resp := c.get(p)
		body := c.body(resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s\n%s", p, resp.Status, body)
		}
		for _, bad := range []string{"<script>window", "<img src=x", "</pre><script>", "<svg", "\x1b", "\xff", "<b>documents", "<i>on purpose"} {
			if strings.Contains(body, bad) {
				t.Errorf("GET %s: page holds %q unescaped", p, bad)
			}
		}
	}
	queue := c.body(c.get("/queue"))
	for _, want := range []string{"&lt;script&gt;window.pwned=1&lt;/script&gt;", "&lt;img src=x onerror=window.pwned=2&gt;.txt",
		`red\x1b[31m\rforged`, `bad\xff\xfe.txt`} {
		if !strings.Contains(queue, want) {
			t.Errorf("queue lacks the escaped name %q", want)
		}
	}
	note := c.body(c.get(fmt.Sprintf("/record/%d", w.byKey[noteName])))
	if !strings.Contains(note, "&lt;/pre&gt;&lt;script&gt;window.pwned=4&lt;/script&gt;") || !strings.Contains(note, `class="add"`) {
		t.Errorf("note.txt's diff is not shown escaped:\n%s", note)
	}

	audit := c.body(c.get("/audit"))
	if strings.Contains(audit, "the hash chain is intact") || !strings.Contains(audit, "verify=1") || !strings.Contains(audit, "exception.add") {
		t.Errorf("audit page lacks the events or the link to verify, or verified unasked:\n%s", audit)
	}
	if audit := c.body(c.get("/audit?verify=1")); !strings.Contains(audit, "the hash chain is intact") || !strings.Contains(audit, "exception.add") {
		t.Errorf("audit page with verify=1 lacks the verify result or the events:\n%s", audit)
	}
	exc := c.body(c.get("/exceptions"))
	if !strings.Contains(exc, "(forced)") || !strings.Contains(exc, "shell-startup: ") || !strings.Contains(exc, "forced &lt;i&gt;on purpose") {
		t.Errorf("exceptions page lacks the forced rule's lint:\n%s", exc)
	}

	// An SVG named .png is no image: no preview, and its bytes are never
	// served as an image or as HTML.
	svg := w.byKey[svgName]
	if body := c.body(c.get(fmt.Sprintf("/record/%d", svg))); strings.Contains(body, `id="preview"`) {
		t.Errorf("the SVG named .png gets a preview")
	}
	if resp := c.get(fmt.Sprintf("/record/%d/preview", svg)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("SVG preview: %s, want 404", resp.Status)
	}
	raw := c.get(fmt.Sprintf("/record/%d/raw", svg))
	if ct, cd := raw.Header.Get("Content-Type"), raw.Header.Get("Content-Disposition"); ct != "application/octet-stream" || !strings.HasPrefix(cd, "attachment") {
		t.Errorf("raw content served as %q, %q", ct, cd)
	}
	if got := c.body(raw); got != svgContent {
		t.Errorf("raw content %q", got)
	}
	checkHeaders(t, "raw", raw)
	// A real PNG gets a preview of its checked type.
	pngID := w.byKey[pngName]
	if body := c.body(c.get(fmt.Sprintf("/record/%d", pngID))); !strings.Contains(body, fmt.Sprintf(`src="/record/%d/preview"`, pngID)) {
		t.Errorf("the PNG gets no preview")
	}
	prev := c.get(fmt.Sprintf("/record/%d/preview", pngID))
	if prev.StatusCode != http.StatusOK || prev.Header.Get("Content-Type") != "image/png" {
		t.Errorf("PNG preview: %s, %q", prev.Status, prev.Header.Get("Content-Type"))
	}
	checkHeaders(t, "preview", prev)
}

func TestImageType(t *testing.T) {
	for in, want := range map[string]string{
		"\x89PNG\r\n\x1a\nxxxx": "image/png", "\xff\xd8\xff\xe0": "image/jpeg", "GIF89a....": "image/gif",
		"RIFF\x00\x00\x00\x00WEBPVP8 ": "image/webp", svgContent: "", "<html>": "", "RIFF\x00\x00\x00\x00WAVE": "",
	} {
		if got := imageType([]byte(in)); got != want {
			t.Errorf("imageType(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecisionsAsTheCLIMakesThem(t *testing.T) {
	w := newWorld(t, 0)
	c := w.client().login()
	a, r := w.byKey[imgName], w.byKey[noteName]
	var genBefore uint64
	w.withEnv(func(e *persist.Env) {
		sbs, _ := e.Sandboxes(t.Context())
		genBefore = sbs[0].Generation
	})
	resp := c.post(fmt.Sprintf("/record/%d/approve", a), url.Values{"csrf": {c.csrf}, "text": {"looks fine"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: %s %s", resp.Status, c.body(resp))
	}
	// After a decision the page goes on to the next record of the queue.
	if loc := resp.Header.Get("Location"); loc != fmt.Sprintf("/next?after=%d", a) {
		t.Errorf("approve redirects to %q", loc)
	}
	if resp := c.post(fmt.Sprintf("/record/%d/reject", r), url.Values{"csrf": {c.csrf}}, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("reject without a reason: %s, want 400 (as the CLI refuses it)", resp.Status)
	}
	resp = c.post(fmt.Sprintf("/record/%d/reject", r), url.Values{"csrf": {c.csrf}, "text": {"not <this>"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("reject: %s %s", resp.Status, c.body(resp))
	}
	// Deciding twice fails as `review approve` does.
	resp = c.post(fmt.Sprintf("/record/%d/approve", a), url.Values{"csrf": {c.csrf}}, nil)
	if body := c.body(resp); resp.StatusCode < 400 || !strings.Contains(body, fmt.Sprintf("record r%d is already approved (by alice", a)) {
		t.Errorf("second approve: %s\n%s", resp.Status, body)
	}
	ra, rr := w.record(a), w.record(r)
	if ra.Status != change.StatusApproved || ra.Note != "looks fine" || ra.DecidedBy != "alice" {
		t.Errorf("approved record: %+v", ra)
	}
	if rr.Status != change.StatusRejected || rr.Reason != "not <this>" || rr.DecidedBy != "alice" {
		t.Errorf("rejected record: %+v", rr)
	}
	w.withEnv(func(e *persist.Env) {
		// A rejection takes the change out: the previous version returns,
		// in a new generation (approving a --review after change does not
		// change the state).
		sbs, _ := e.Sandboxes(t.Context())
		if sbs[0].Generation != genBefore+1 {
			t.Errorf("generation %d after approve+reject, want %d", sbs[0].Generation, genBefore+1)
		}
		v, err := e.PersistedVersion(t.Context(), "docs", noteName, 0)
		if err != nil || v.Session != 1 {
			t.Errorf("note.txt in effect: %+v, %v (want session 1's version)", v, err)
		}
		var types []string
		err = e.ForEachEvent(t.Context(), "docs", func(ev *persist.Event) error {
			if strings.HasPrefix(ev.Type, "review.") && ev.Data["reviewer"] == "alice" {
				types = append(types, ev.Type+" "+ev.Data["records"])
			}
			return nil
		})
		want := fmt.Sprintf("[review.approve r%d review.reject r%d]", a, r)
		if err != nil || fmt.Sprint(types) != want {
			t.Errorf("audit: %v %v, want %s", types, err, want)
		}
		if p, err := e.VerifyAudit(t.Context()); p != nil || err != nil {
			t.Errorf("audit verify: %q %v", p, err)
		}
	})
}

func TestBusyStateThenRetry(t *testing.T) {
	w := newWorld(t, 0)
	c := w.client().login()
	id := w.byKey[imgName]
	e := w.openEnv() // a CLI command holds the state directory
	start := time.Now()
	resp := c.get("/queue")
	body := c.body(resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("queue while busy: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(body, `http-equiv="refresh"`) || !strings.Contains(body, "busy") {
		t.Errorf("busy page does not retry by itself:\n%s", body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("busy answer took %s", d)
	}
	resp = c.post(fmt.Sprintf("/record/%d/approve", id), url.Values{"csrf": {c.csrf}}, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("approve while busy: %s", resp.Status)
	}
	e.Close()
	if r := w.record(id); r.Status != change.StatusPending {
		t.Fatalf("a busy approve changed r%d", id)
	}
	if resp := c.get("/queue"); resp.StatusCode != http.StatusOK {
		t.Fatalf("queue after the lock is released: %s", resp.Status)
	}
	if resp := c.post(fmt.Sprintf("/record/%d/approve", id), url.Values{"csrf": {c.csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve after the lock is released: %s", resp.Status)
	}
}

// TestBusySandboxThenRetry: an approve while a command holds the record's
// sandbox (a close of it running) is 503 with Retry-After and the busy
// page, nothing changed, not a 500 advising --lock-timeout; the holder's
// description is one short line however long its command line.
func TestBusySandboxThenRetry(t *testing.T) {
	w := newWorld(t, 0)
	c := w.client().login()
	id := w.byKey[imgName]
	sb := w.record(id).Sandbox
	what := "close " + sb + " " + strings.Repeat("python3 -c 'import os'\n", 200)
	l, err := lock.Acquire(t.Context(), filepath.Join(w.root, "locks", sb), what, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp := c.post(fmt.Sprintf("/record/%d/approve", id), url.Values{"csrf": {c.csrf}}, nil)
	body := c.body(resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("approve while the sandbox is busy: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(body, "busy") || strings.Contains(body, "lock-timeout") || len(body) > 20000 {
		t.Errorf("busy page (%d bytes):\n%s", len(body), body)
	}
	l.Release()
	if r := w.record(id); r.Status != change.StatusPending {
		t.Fatalf("a busy approve changed r%d", id)
	}
	if resp := c.post(fmt.Sprintf("/record/%d/approve", id), url.Values{"csrf": {c.csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve after the lock is released: %s", resp.Status)
	}
}

// TestCommandsRunBetweenRequests: serve holds nothing between requests, so
// a command (here persist as the CLI opens it) gets the state directory at
// once while the server runs, and its change shows in the next page.
func TestCommandsRunBetweenRequests(t *testing.T) {
	w := newWorld(t, 0)
	c := w.client().login()
	for i := range 3 {
		if resp := c.get("/queue"); resp.StatusCode != http.StatusOK {
			t.Fatalf("queue: %s", resp.Status)
		}
		start := time.Now()
		e, err := persist.OpenEnv(t.Context(), persist.Options{Root: w.root, LockTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("a command cannot open the state while serve runs: %v", err)
		}
		if i == 0 {
			if _, err := e.Approve(t.Context(), []uint64{w.byKey[ctrlName]}, "from the CLI"); err != nil {
				t.Fatal(err)
			}
		}
		e.Close()
		if d := time.Since(start); d > time.Second {
			t.Errorf("opening the state took %s", d)
		}
	}
	body := c.body(c.get("/queue"))
	if strings.Contains(body, fmt.Sprintf(`data-id="%d"`, w.byKey[ctrlName])) {
		t.Errorf("the record approved by a command is still in the queue")
	}
	if !strings.Contains(body, fmt.Sprintf(`data-id="%d"`, w.byKey[imgName])) {
		t.Errorf("the queue lost a pending record")
	}
}

func TestQueuePagingAndFilters(t *testing.T) {
	w := newWorld(t, 120)
	c := w.client().login()
	ids := func(body string) []string {
		var out []string
		for _, part := range strings.Split(body, `data-id="`)[1:] {
			out = append(out, part[:strings.IndexByte(part, '"')])
		}
		return out
	}
	total := len(w.byKey)
	var seen []string
	p := "/queue"
	for range 10 {
		body := c.body(c.get(p))
		got := ids(body)
		if len(got) > pageSize {
			t.Fatalf("page of %d records", len(got))
		}
		seen = append(seen, got...)
		i := strings.Index(body, `id="nextpage" href="`)
		if i < 0 {
			break
		}
		rest := body[i+len(`id="nextpage" href="`):]
		p = strings.ReplaceAll(rest[:strings.IndexByte(rest, '"')], "&amp;", "&")
	}
	if len(seen) != total {
		t.Fatalf("pages showed %d records, want %d", len(seen), total)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] && len(seen[i]) <= len(seen[i-1]) {
			t.Fatalf("records out of order or repeated: %v", seen)
		}
	}
	for q, want := range map[string]int{
		"prefix=" + url.QueryEscape(docs+"many/"): 120,
		"kind=modify":       1,
		"kind=delete":       0,
		"exception=" + w.ex: min(total, pageSize),
		"exception=ex999":   0,
		"sandbox=docs&kind=add&prefix=" + url.QueryEscape(docs+"<"): 3, // two files and the directory "<script>…<"
	} {
		body := c.body(c.get("/queue?" + q))
		if got := len(ids(body)); got != min(want, pageSize) {
			t.Errorf("queue?%s: %d records, want %d", q, got, min(want, pageSize))
		}
	}
	// The API pages the same way, with a Link to the next page.
	var apiSeen []uint64
	for p := "/api/review?limit=50"; p != ""; {
		resp := c.get(p)
		var recs []struct{ ID uint64 }
		if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s %v", p, resp.Status, err)
		}
		if len(recs) > 50 {
			t.Fatalf("GET %s: %d records", p, len(recs))
		}
		for _, r := range recs {
			apiSeen = append(apiSeen, r.ID)
		}
		p = ""
		if m := regexp.MustCompile(`^<([^>]+)>; rel="next"$`).FindStringSubmatch(resp.Header.Get("Link")); m != nil {
			p = m[1]
		}
	}
	if len(apiSeen) != total || !slices.IsSorted(apiSeen) {
		t.Errorf("the API's pages hold %d records (%v), want %d in order", len(apiSeen), apiSeen, total)
	}
	if resp := w.client().get("/api/review"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API without a session: %s", resp.Status)
	}
	if resp := c.get("/api/review?sandbox=nosuch"); resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("API, unknown sandbox: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if resp := c.get("/queue?sandbox=nosuch"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown sandbox: %s, want 404", resp.Status)
	}
}

// TestTLS: behind TLS the cookie is Secure and the https origin is the
// one a POST must come from.
func TestTLS(t *testing.T) {
	w := newWorld(t, 0)
	ts := httptest.NewUnstartedServer(nil)
	srv, err := New(Config{Persist: persist.Options{Root: w.root}, Addr: ts.Listener.Addr().String(), TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv
	ts.StartTLS()
	defer ts.Close()
	w.srv, w.ts = srv, ts
	if !strings.HasPrefix(srv.LoginURL(), "https://") {
		t.Fatalf("login URL %s", srv.LoginURL())
	}
	c := w.client()
	c.c.Transport = ts.Client().Transport
	resp := c.get(srv.LoginURL())
	if len(resp.Cookies()) != 1 || !resp.Cookies()[0].Secure {
		t.Fatalf("cookies %v: want one Secure cookie", resp.Cookies())
	}
	c.login2()
	id := w.byKey[imgName]
	if resp := c.post(fmt.Sprintf("/record/%d/approve", id), url.Values{"csrf": {c.csrf}}, map[string]string{"Origin": "http://" + ts.Listener.Addr().String()}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("http origin on an https server: %s, want 403", resp.Status)
	}
	if resp := c.post(fmt.Sprintf("/record/%d/approve", id), url.Values{"csrf": {c.csrf}}, map[string]string{"Origin": ts.URL}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("https origin: %s, want 303", resp.Status)
	}
}

// TestRecordPageNamesADatabaseSplit: the page of a pending record of a
// sqlite database (the file, its -wal of the same session) names the
// database and links its other pending records; a plain document's page
// names nothing.
func TestRecordPageNamesADatabaseSplit(t *testing.T) {
	w := newWorld(t, 0)
	db := docs + "app.db"
	w.session(map[string]string{db: "pages", db + "-wal": "frames"})
	ids := w.pendingIDs(t, db, db+"-wal")
	dbID, walID := ids[0], ids[1]
	c := w.client().login()
	body := c.body(c.get(fmt.Sprintf("/record/%d", dbID)))
	want := fmt.Sprintf(`<a href="/record/%d">r%d</a>`, walID, walID)
	if !strings.Contains(body, `id="part">the sqlite database`) || !strings.Contains(body, want) {
		t.Errorf("the database's page does not name its -wal (%s):\n%s", want, body)
	}
	if body := c.body(c.get(fmt.Sprintf("/record/%d", w.byKey[noteName]))); strings.Contains(body, `id="part"`) {
		t.Errorf("a plain document's page names a database or repository:\n%s", body)
	}
}

// TestRecordPageNamesRecordsBeneathADirectory: the page of a pending new
// directory names the records of its session beneath it, which keep it in
// place if it alone is rejected.
func TestRecordPageNamesRecordsBeneathADirectory(t *testing.T) {
	w := newWorld(t, 0)
	dir := docs + "clone"
	w.session(map[string]string{dir + "/a.txt": "a"})
	ids := w.pendingIDs(t, dir, dir+"/a.txt")
	dirID, fileID := ids[0], ids[1]
	c := w.client().login()
	body := c.body(c.get(fmt.Sprintf("/record/%d", dirID)))
	want := fmt.Sprintf(`<a href="/record/%d">r%d</a>`, fileID, fileID)
	if !strings.Contains(body, `<th>beneath it</th><td id="part">records of session`) || !strings.Contains(body, want) {
		t.Errorf("the directory's page does not name the record beneath it (%s):\n%s", want, body)
	}
	if body := c.body(c.get(fmt.Sprintf("/record/%d", fileID))); strings.Contains(body, `id="part"`) {
		t.Errorf("a plain document's page names a database, repository or directory:\n%s", body)
	}
}

// pendingIDs returns the ids of docs' pending records at paths, in order;
// a path with none fails the test.
func (w *world) pendingIDs(t *testing.T, paths ...string) []uint64 {
	t.Helper()
	ids := make([]uint64, len(paths))
	w.withEnv(func(e *persist.Env) {
		recs, err := e.ReviewList(t.Context(), "docs")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if i := slices.Index(paths, r.Path); i >= 0 {
				ids[i] = r.ID
			}
		}
	})
	for i, id := range ids {
		if id == 0 {
			t.Fatalf("no pending record of %s", paths[i])
		}
	}
	return ids
}
