package serve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/store"
)

// ---- serve under forged ledger rows (docs/fleet.md, "A host that writes
// rows it should not"). The world's ledger is a PostgreSQL database; the
// attacker (a compromised host h1 of the fleet) writes rows into it through
// the store API or as raw SQL into table kv, and plants files in the blob
// directory (a fleet shares it). The reviewer's `serve` runs over the
// world's root. Tests whose comment says "was a hole" failed before the
// fixes that followed (record ids checked against their keys, a scoped
// queue shows only its sandbox's records, sizes that cannot overflow,
// forms that name what the page showed); the others fail if the
// protection they name goes.

// forger is the attacker: the ledger through the store API and through SQL.
type forger struct {
	t    *testing.T
	w    *world
	st   *store.Store
	conn *pgx.Conn
}

// forgedWorld is a world on a PostgreSQL ledger and its attacker.
func forgedWorld(t *testing.T) (*world, *forger) {
	t.Helper()
	w := newWorldOn(t, 0, pgtest.URL(t))
	ctx := context.Background()
	st, err := store.OpenURL(ctx, w.store, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	conn, err := pgx.Connect(ctx, w.store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return w, &forger{t: t, w: w, st: st, conn: conn}
}

func (f *forger) update(fn func(tx *store.Tx) error) {
	f.t.Helper()
	if err := f.st.Update(fn); err != nil {
		f.t.Fatal(err)
	}
}

// sqlPut writes value v at key k in the store's encoding of everything
// but records (version byte 1, gob), which decodeRecord reads as well.
func (f *forger) sqlPut(k []byte, v any) {
	f.t.Helper()
	var buf bytes.Buffer
	buf.WriteByte(1)
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		f.t.Fatal(err)
	}
	f.sqlSet(k, buf.Bytes())
}

func (f *forger) sqlSet(k, v []byte) {
	f.t.Helper()
	if v == nil {
		v = []byte{}
	}
	if _, err := f.conn.Exec(context.Background(), `INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`, k, v); err != nil {
		f.t.Fatal(err)
	}
}

func keyOf(prefix string, parts ...any) []byte {
	b := []byte(prefix)
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b = append(append(b, v...), 0)
		case uint64:
			b = binary.BigEndian.AppendUint64(b, v)
		}
	}
	return b
}

// record writes r through the store API with a fresh id, returns the id.
func (f *forger) record(r store.Record) uint64 {
	f.t.Helper()
	f.update(func(tx *store.Tx) (err error) {
		if r.ID, err = tx.NextRecordID(); err != nil {
			return err
		}
		return tx.PutRecord(&r)
	})
	return r.ID
}

// pendingFile is a pending record of a file of sandbox sb at path p whose
// content is the note's (an existing blob), as a close writes it.
func (w *world) pendingFile(sb, p string) store.Record {
	note := w.record(w.byKey[noteName])
	now := time.Now().UTC()
	return store.Record{Sandbox: sb, Session: 1, Path: p, Kind: change.KindAdd, Type: change.TypeFile,
		Size: note.Size, Digest: note.Digest, Mode: 0o644, Exception: w.ex, Review: change.ReviewBefore,
		Status: change.StatusPending, Created: now, Mtime: now}
}

// secretSandbox makes a second sandbox, "secret", with one pending record
// of a path docs' reviewer should never approve by mistake.
func (w *world) secretSandbox(f *forger) uint64 {
	w.withEnv(func(e *persist.Env) {
		if err := e.CreateSandbox("secret", "base"); err != nil {
			w.t.Fatal(err)
		}
	})
	return f.record(w.pendingFile("secret", "/root/.ssh/authorized_keys"))
}

// serveDirect runs one request through the server's handler, logged in
// as c, and fails the test when the handler panics (any panic but
// http.ErrAbortHandler, the deliberate abort of a download whose content
// fails its check) or gives no answer within limit (plus 5 s). ok says
// it answered.
func (c *client) serveDirect(method, target string, limit time.Duration) (rec *httptest.ResponseRecorder, ok bool) {
	c.w.t.Helper()
	rec, p, done := c.serveOnce(method, target, limit)
	switch {
	case !done:
		c.w.t.Errorf("%s %s: no answer in %v", method, target, limit+5*time.Second)
	case p != "":
		c.w.t.Errorf("%s %s: the handler panicked: %s", method, target, p)
	}
	return rec, done && p == ""
}

// serveOnce is serveDirect's request: the answer, the panic's value
// ("": none) and whether the handler returned within limit.
func (c *client) serveOnce(method, target string, limit time.Duration) (rec *httptest.ResponseRecorder, panicked string, done bool) {
	c.w.t.Helper()
	u, _ := url.Parse(c.w.ts.URL)
	req := httptest.NewRequest(method, target, nil)
	req.Host = u.Host
	for _, ck := range c.c.Jar.Cookies(u) {
		req.AddCookie(ck)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	req = req.WithContext(ctx)
	rec = httptest.NewRecorder()
	ch := make(chan string, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				ch <- fmt.Sprint(p)
				return
			}
			ch <- ""
		}()
		c.w.srv.ServeHTTP(rec, req)
	}()
	select {
	case p := <-ch:
		return rec, p, true
	case <-time.After(limit + 5*time.Second):
		return rec, "", false
	}
}

// approveRowOf finds the queue row showing path p and returns its record
// id and the action of its approve form ("" when no row shows p).
func approveRowOf(body, p string) (id, action string) {
	rows := regexp.MustCompile(`(?s)<tr class="rec" data-id="(\d+)".*?</tr>`).FindAllStringSubmatch(body, -1)
	for _, r := range rows {
		if strings.Contains(r[0], p) {
			a := regexp.MustCompile(`action="(/record/\d+/approve)"`).FindStringSubmatch(r[0])
			if a != nil {
				return r[1], a[1]
			}
			return r[1], ""
		}
	}
	return "", ""
}

// Was a hole: a record row whose value names another record's id. h1 writes,
// as raw SQL, a record under a fresh key r:X whose value says ID = the id
// of a pending record of sandbox "secret" (/root/.ssh/authorized_keys),
// sandbox "docs" and the path Documents/harmless.txt, with pending index
// entries for X. The docs queue shows a row "harmless.txt, docs", but its
// approve button (and the record page's, /record/X) posts
// /record/VICTIM/approve: the reviewer approves secret's authorized_keys.
// store.GetRecord (and indexedRecords) return the value's ID without
// comparing it with the key's; serve's templates use the value's.
func TestForgedRecordIDNamesAnotherRecord(t *testing.T) {
	w, f := forgedWorld(t)
	c := w.client().login()
	victim := w.secretSandbox(f)
	forged := w.pendingFile("docs", docs+"harmless.txt")
	forged.ID = victim
	x := victim + 1000
	f.sqlPut(keyOf("r:", x), &forged)
	f.sqlSet(keyOf("rq:", x), nil)
	f.sqlSet(keyOf("rQ:", "docs", x), nil)

	// The record page of X must not offer a decision on another record.
	if resp := c.get(fmt.Sprintf("/record/%d", x)); resp.StatusCode == http.StatusOK {
		body := c.body(resp)
		if strings.Contains(body, fmt.Sprintf(`action="/record/%d/approve"`, victim)) {
			t.Errorf("/record/%d shows %s but its approve form posts /record/%d/approve (sandbox secret's record)", x, "harmless.txt", victim)
		}
	}
	body := c.body(c.get("/queue?sandbox=docs"))
	id, action := approveRowOf(body, "harmless.txt")
	t.Logf("queue row of harmless.txt: r%s, approve action %q", id, action)
	if action != "" {
		resp := c.post(action, url.Values{"csrf": {c.csrf}, "back": {"queue"}, "sandbox": {"docs"}}, nil)
		t.Logf("POST %s: %s", action, resp.Status)
	}
	if r := w.record(victim); r.Status != change.StatusPending {
		t.Errorf("approving the row that showed docs' harmless.txt decided r%d of sandbox %s (%s): status %s by %s",
			victim, r.Sandbox, r.Path, r.Status, r.DecidedBy)
	}
}

// Was a hole: a pending index entry of docs (rQ:docs\0ID) naming a record of
// sandbox "secret". A serve scoped to docs (serve --sandbox docs: "showing
// sandbox docs") lists secret's record in its queue and API and approves
// it from there: persist's reviewEach reads records through the sandbox's
// index without checking that each belongs to the sandbox.
func TestForgedPendingIndexOtherSandbox(t *testing.T) {
	w, f := forgedWorld(t)
	victim := w.secretSandbox(f)
	f.sqlSet(keyOf("rQ:", "docs", victim), nil)

	w2 := *w
	w2.srv, w2.ts = w.scopedServer(Config{Sandbox: "docs"})
	c := w2.client().login()
	api := c.body(c.get("/api/review"))
	if strings.Contains(api, `"sandbox": "secret"`) {
		t.Errorf("a serve scoped to docs lists a record of sandbox secret in /api/review")
	}
	body := c.body(c.get("/queue"))
	if strings.Contains(body, fmt.Sprintf(`data-id="%d"`, victim)) {
		t.Errorf("a serve scoped to docs lists r%d of sandbox secret in its queue", victim)
	}
	if _, action := approveRowOf(body, "authorized_keys"); action != "" {
		c.post(action, url.Values{"csrf": {c.csrf}, "back": {"queue"}}, nil)
	}
	if r := w.record(victim); r.Status != change.StatusPending {
		t.Errorf("a serve scoped to docs approved r%d of sandbox %s (%s) from its queue", victim, r.Sandbox, r.Path)
	}
}

// Was a hole: a file record whose size is math.MaxInt64 naming an existing blob.
// GET /record/X/raw panics in the handler: persist's verified.Read
// computes v.size+1-v.n, which overflows to a negative bound, and slices
// p with it (persist/content.go). (net/http recovers the panic and drops
// the connection; the test calls the handler directly.)
func TestForgedRecordSizeMaxInt64Raw(t *testing.T) {
	w, f := forgedWorld(t)
	r := w.pendingFile("docs", docs+"huge.txt")
	r.Size = math.MaxInt64
	x := f.record(r)
	c := w.client().login()
	for _, target := range []string{fmt.Sprintf("/record/%d", x), fmt.Sprintf("/record/%d/preview", x),
		fmt.Sprintf("/api/record/%d", x), fmt.Sprintf("/record/%d/raw", x)} {
		if rec, ok := c.serveDirect(http.MethodGet, target, 20*time.Second); ok {
			t.Logf("GET %s: %d", target, rec.Code)
		}
	}
}

// Forged records with hostile sizes, types, kinds and digests, written
// through the store API: every page and endpoint that reads them answers
// within 25 s without a panic (an aborted download excepted), and no
// answer carries the bytes of a host file. (Fails if OpenVerified stopped
// refusing negative sizes, Blobs.Path stopped requiring 64 hex digits, or
// the diff and preview stopped bounding what they read by the size.)
func TestForgedRecordsHostile(t *testing.T) {
	w, f := forgedWorld(t)
	note := w.record(w.byKey[noteName])
	var ids []uint64
	add := func(mod func(r *store.Record)) {
		r := w.pendingFile("docs", docs+"hostile-"+strconv.Itoa(len(ids)))
		mod(&r)
		ids = append(ids, f.record(r))
	}
	for _, size := range []int64{-1, math.MinInt64, math.MaxInt64 - 1, 1 << 62, 0, 11, maxPreview + 1} {
		add(func(r *store.Record) { r.Size = size })
	}
	for _, d := range []string{"sha256:../../../../../../../../../../../../../../../../../../../../../etc/passwd",
		"sha256:" + strings.Repeat("../", 21) + "e", "sha256:" + strings.ToUpper(strings.TrimPrefix(note.Digest, "sha256:")),
		"/etc/passwd", "x", "sha256:"} {
		add(func(r *store.Record) { r.Digest = d })
		// Above the diff's 1 MiB, review show reads no content: the
		// download would stream what the digest names before its check.
		add(func(r *store.Record) { r.Digest, r.Size = d, 2<<20 })
	}
	for _, typ := range []change.FileType{"dir", "symlink", "fifo", "device", "", "<b>t</b>"} {
		add(func(r *store.Record) { r.Type = typ; r.Link = "/etc/passwd" })
	}
	for _, kind := range []change.Kind{"delete", "modify", "", "<i>k</i>"} {
		add(func(r *store.Record) { r.Kind = kind })
	}
	add(func(r *store.Record) { r.Mode = math.MaxUint32; r.UID = math.MaxUint32 })
	add(func(r *store.Record) { r.Path = "relative/../../etc/passwd" })
	add(func(r *store.Record) { r.Path = "" })
	add(func(r *store.Record) { r.Path = docs + "note.txt"; r.Size = -5 }) // a previous version for the note with a bad size
	add(func(r *store.Record) { r.Pruned, r.Digest = true, "" })
	add(func(r *store.Record) { r.Purged = true })
	add(func(r *store.Record) { r.Status = "refused"; r.Reason = "<b>r</b>" })
	add(func(r *store.Record) { r.Session = math.MaxUint64 })
	add(func(r *store.Record) { r.Exception = "ex99999999999999999999" })

	passwd, _ := os.ReadFile("/etc/passwd")
	firstLine, _, _ := strings.Cut(string(passwd), "\n")
	c := w.client().login()
	targets := []string{"/", "/queue", "/queue?sandbox=docs", "/api/review", "/api/sandboxes", "/exceptions?all=1", "/audit",
		"/history?sandbox=docs&path=" + url.QueryEscape(docs+"note.txt")}
	for _, id := range ids {
		for _, p := range []string{"/record/%d", "/record/%d/raw", "/record/%d/preview", "/api/record/%d"} {
			targets = append(targets, fmt.Sprintf(p, id))
		}
	}
	for _, target := range targets {
		rec, ok := c.serveDirect(http.MethodGet, target, 20*time.Second)
		switch {
		case !ok:
		case firstLine != "" && strings.Contains(rec.Body.String(), firstLine):
			t.Errorf("GET %s: the answer carries /etc/passwd", target)
		default:
			t.Logf("GET %s: %d", target, rec.Code)
		}
	}
}

// A record whose digest names a blob that h1 (sharing the blob
// directory) replaced with a symlink to a host file (the record gives
// that file's digest and size, so it would pass the check) and one that
// names a FIFO: the record page, preview, download and API never serve
// the host file and never hang. (Fails if openBlobFile stopped opening
// with O_NOFOLLOW and O_NONBLOCK or stopped refusing what is not a
// regular file.)
func TestForgedBlobSymlinkAndFIFO(t *testing.T) {
	w, f := forgedWorld(t)
	secret := []byte("host secret of h2: do not serve\n")
	canary := filepath.Join(t.TempDir(), "canary")
	if err := os.WriteFile(canary, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(secret)
	blobs := filepath.Join(w.root, "blobs", "sha256")
	if err := os.Symlink(canary, filepath.Join(blobs, hex.EncodeToString(sum[:]))); err != nil {
		t.Fatal(err)
	}
	fifoContent := []byte("fifo content\n")
	fsum := sha256.Sum256(fifoContent)
	fifo := filepath.Join(blobs, hex.EncodeToString(fsum[:]))
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Should a reader block on the FIFO, a writer set it free at the end,
	// so that the server can stop.
	t.Cleanup(func() {
		if fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			syscall.Close(fd)
		}
	})
	link := w.pendingFile("docs", docs+"link-blob.txt")
	link.Digest, link.Size = "sha256:"+hex.EncodeToString(sum[:]), int64(len(secret))
	pipe := w.pendingFile("docs", docs+"fifo-blob.txt")
	pipe.Digest, pipe.Size = "sha256:"+hex.EncodeToString(fsum[:]), int64(len(fifoContent))
	ids := []uint64{f.record(link), f.record(pipe)}
	// A previous version of the note naming the linked blob: the note's
	// diff would show the host file.
	prev := w.pendingFile("docs", noteName)
	prev.Digest, prev.Size, prev.Status = link.Digest, link.Size, change.StatusApproved
	ids = append(ids, f.record(prev), w.byKey[noteName])

	c := w.client().login()
	for _, id := range ids {
		for _, p := range []string{"/record/%d", "/record/%d/raw", "/record/%d/preview", "/api/record/%d"} {
			target := fmt.Sprintf(p, id)
			// (no answer: a FIFO blob blocks)
			if rec, ok := c.serveDirect(http.MethodGet, target, 15*time.Second); ok && strings.Contains(rec.Body.String(), "host secret") {
				t.Errorf("GET %s: serves the host file the blob links to", target)
			}
		}
	}
}

// markers are what a forged row plants in free-text fields: each would be
// markup in the reviewer's page if a template ever put it there unescaped.
const (
	mkScript = `<script>window.pwned=11</script>`
	mkImg    = `"><img src=x onerror=window.pwned=12>`
	mkSvg    = `'><svg onload=window.pwned=13>`
)

var markers = []string{mkScript, mkImg, mkSvg}

// Exception rows, audit entries, session rows, sandbox fields and record
// fields with markup in every free-text field (reason, patterns, revoke
// reason, review mode, exception ids, audit types, users, data keys and
// values, session hosts, image and state of a sandbox row, record digest,
// type, kind, link, exception, reason, note, decided-by): no page shows
// any of them as markup, and no JSON answer holds a raw "<". (Fails if a
// template stopped escaping one of them, e.g. through template.HTML, or
// the API stopped escaping HTML in JSON.)
func TestForgedRowsMarkupEscaped(t *testing.T) {
	w, f := forgedWorld(t)
	all := strings.Join(markers, " ")
	now := time.Now().UTC()
	var xid string
	f.update(func(tx *store.Tx) error {
		for i, m := range markers {
			x := &exceptions.Exception{ID: "ex" + strconv.Itoa(900+i), Sandbox: "docs", Patterns: []string{docs + m, m},
				Reason: m, Created: now, CreatedBy: m, Review: change.ReviewMode(m), RevokedBy: m, RevokeReason: m}
			if i == 2 {
				x.Revoked = now
			}
			if err := tx.PutException(x); err != nil {
				return err
			}
		}
		xid = "ex900"
		for _, m := range markers {
			if _, err := tx.Append(now, m, "docs", map[string]string{m: m, "session": "2", "host": m, "by": m}); err != nil {
				return err
			}
			if _, err := tx.Append(now, "fleet."+m, "", map[string]string{"host": m}); err != nil {
				return err
			}
		}
		se, err := tx.GetSession("docs", 2)
		if err != nil {
			return err
		}
		se.Host = mkImg
		return tx.PutSession(se)
	})
	// An exception row under e:N whose value names an id of markup, and
	// a sandbox row with markup in its image and state (raw SQL).
	f.sqlPut(keyOf("e:", uint64(950)), &exceptions.Exception{ID: mkScript, Sandbox: "docs", Patterns: []string{docs + "**"}, Reason: all})
	f.sqlSet(keyOf("E:", "docs", uint64(950)), nil)
	f.sqlPut(keyOf("s:", "odd"), &store.Sandbox{Name: "odd", Image: mkScript, State: mkImg, Created: now, Session: 1})
	var ids []uint64
	for i, m := range markers {
		r := w.pendingFile("docs", docs+"marked-"+strconv.Itoa(i))
		r.Digest, r.Type, r.Kind, r.Link, r.Reason, r.Note, r.DecidedBy = m, change.FileType(m), change.Kind(m), m, m, m, m
		r.Exception = xid
		ids = append(ids, f.record(r))
		r2 := w.pendingFile("docs", docs+"marked-"+strconv.Itoa(i))
		r2.Exception, r2.Status, r2.Reason, r2.Note, r2.DecidedBy, r2.DecidedAt = "ex950", change.StatusRejected, m, m, m, now
		ids = append(ids, f.record(r2))
		r3 := w.pendingFile("docs", docs+"marked-"+strconv.Itoa(i))
		r3.Exception = m
		ids = append(ids, f.record(r3))
	}

	c := w.client().login()
	targets := []string{"/", "/queue", "/queue?sandbox=docs", "/exceptions", "/exceptions?all=1", "/exceptions?sandbox=docs&all=1",
		"/audit", "/audit?verify=1", "/audit?sandbox=docs", "/audit?host=" + url.QueryEscape(mkImg), "/recovery?sandbox=docs",
		"/history?sandbox=docs&path=" + url.QueryEscape(docs+"marked-0"), "/api/sandboxes", "/api/review", "/api/review?host=" + url.QueryEscape(mkImg)}
	for _, id := range ids {
		targets = append(targets, fmt.Sprintf("/record/%d", id), fmt.Sprintf("/api/record/%d", id))
	}
	seen := 0
	for _, target := range targets {
		rec, ok := c.serveDirect(http.MethodGet, target, 20*time.Second)
		if !ok {
			continue
		}
		body := rec.Body.String()
		if strings.Contains(body, "pwned") {
			seen++
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			if strings.Contains(body, "<") {
				t.Errorf("GET %s: a raw < in the JSON answer", target)
			}
			continue
		}
		for _, m := range markers {
			for _, tag := range []string{"<script>window.pwned", "<img src=x", "<svg onload"} {
				if strings.Contains(m, tag) && strings.Contains(body, tag) {
					t.Errorf("GET %s (%d): markup from a forged row in the page: %s", target, rec.Code, tag)
				}
			}
		}
	}
	if seen < len(targets)/2 {
		t.Errorf("only %d of %d answers show the planted text at all: the test does not reach the rows", seen, len(targets))
	}
}

// Audit entries with large data (8 MiB in one value, 2,000 keys in
// another) and a pending index entry naming a record that is not there:
// the audit page answers within 30 s, every page answers without a panic
// or a hang, and the queue lists the real records, skipping the entry.
// (Fails if the audit page or the queue stopped bounding what they read
// per page, or one dangling entry failed the queue as a whole, as it did.)
func TestForgedAuditHugeAndDanglingIndex(t *testing.T) {
	w, f := forgedWorld(t)
	now := time.Now().UTC()
	f.update(func(tx *store.Tx) error {
		if _, err := tx.Append(now, "sandbox.close", "docs", map[string]string{"big": strings.Repeat("<&>", 8<<20/3)}); err != nil {
			return err
		}
		many := map[string]string{}
		for i := range 2000 {
			many["k"+strconv.Itoa(i)] = strings.Repeat("v", 100)
		}
		_, err := tx.Append(now, "sandbox.close", "docs", many)
		return err
	})
	c := w.client().login() // reads a CSRF token off the queue page
	missing := uint64(1 << 40)
	f.sqlSet(keyOf("rq:", missing), nil)
	f.sqlSet(keyOf("rQ:", "docs", missing), nil)
	for _, target := range []string{"/audit", "/audit?sandbox=docs", "/audit?verify=1", "/queue", "/queue?sandbox=docs",
		"/next?after=0", "/api/review", fmt.Sprintf("/record/%d", w.byKey[noteName]), fmt.Sprintf("/record/%d", missing)} {
		start := time.Now()
		if rec, ok := c.serveDirect(http.MethodGet, target, 30*time.Second); ok {
			t.Logf("GET %s: %d, %d bytes, %v", target, rec.Code, rec.Body.Len(), time.Since(start).Round(time.Millisecond))
			if strings.Contains(rec.Body.String(), "<&>") {
				t.Errorf("GET %s: the audit data is not escaped", target)
			}
			if strings.HasPrefix(target, "/queue") || target == "/api/review" {
				// the page's row (data-id) or the API's object of the record
				id := w.byKey[noteName]
				listed := strings.Contains(rec.Body.String(), fmt.Sprintf(`data-id="%d"`, id)) || strings.Contains(rec.Body.String(), fmt.Sprintf(`"id": %d,`, id))
				if rec.Code != http.StatusOK || !listed {
					t.Errorf("GET %s: %d, the pending record %d listed: %v\n%.600s", target, rec.Code, id, listed, rec.Body.String())
				}
			}
		}
	}
}

// Was a hole: a record rewritten between the page and the click. The reviewer
// opens a pending record of docs (harmless.txt, the note's content); h1
// then rewrites that record's row (same id) to another path and content;
// the approve form the page showed posts only the id, so the decision
// approves the rewritten record, recorded as the reviewer's. Nothing in
// the form binds the decision to what the page showed (serve/record.go
// decide, templates/record.html and queue.html).
func TestForgedRecordSwappedBeforeDecision(t *testing.T) {
	w, f := forgedWorld(t)
	c := w.client().login()
	r := w.pendingFile("docs", docs+"harmless.txt")
	x := f.record(r)
	body := c.body(c.get(fmt.Sprintf("/record/%d", x)))
	form := regexp.MustCompile(`(?s)<form method="post" action="(/record/\d+/approve)" id="approve">(.*?)</form>`).FindStringSubmatch(body)
	if form == nil {
		t.Fatalf("no approve form on /record/%d", x)
	}
	vals := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`).FindAllStringSubmatch(form[2], -1) {
		vals.Set(m[1], m[2])
	}
	swapped := r
	swapped.ID = x
	swapped.Path = "/home/user/.bashrc"
	png := w.record(w.byKey[pngName])
	swapped.Digest, swapped.Size = png.Digest, png.Size
	f.update(func(tx *store.Tx) error { return tx.PutRecord(&swapped) })
	resp := c.post(form[1], vals, nil)
	t.Logf("POST %s after the swap: %s", form[1], resp.Status)
	if got := w.record(x); got.Status == change.StatusApproved && got.Path != r.Path {
		t.Errorf("the page showed r%d as %s; the approval applied to %s (digest %s), decided by %s", x, r.Path, got.Path, got.Digest, got.DecidedBy)
	}
}
