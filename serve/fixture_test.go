package serve

import (
	"bytes"
	"context"
	"html"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/internal/testrootfs"
	"github.com/spillway/spillway/persist"
)

var (
	rootfsOnce sync.Once
	rootfsDir  string
	rootfsErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop() // the cluster a test on PostgreSQL started, if any
	if rootfsDir != "" {
		os.RemoveAll(rootfsDir)
	}
	os.Exit(code)
}

func busyboxRootfs(t *testing.T) string {
	t.Helper()
	rootfsOnce.Do(func() {
		rootfsDir, rootfsErr = os.MkdirTemp("", "spillway-serve-rootfs-")
		if rootfsErr == nil {
			rootfsErr = testrootfs.Build(rootfsDir)
		}
	})
	if rootfsErr != nil {
		t.Fatal(rootfsErr)
	}
	return rootfsDir
}

// docs is where the fixture's exception lets files through.
const docs = "/home/user/Documents/"

// Hostile names and contents a sandbox plants. Each script, if it ever
// ran, would set window.pwned.
var (
	scriptName  = docs + "<script>window.pwned=1</script>"
	imgName     = docs + "<img src=x onerror=window.pwned=2>.txt"
	ctrlName    = docs + "red\x1b[31m\rforged"
	badUTF8Name = docs + "bad\xff\xfe.txt"
	svgName     = docs + "logo.png"
	pngName     = docs + "pixel.png"
	noteName    = docs + "note.txt"
	imgContent  = "<img src=x onerror=window.pwned=3>\n"
	preContent  = "</pre><script>window.pwned=4</script>\n"
	svgContent  = `<svg xmlns="http://www.w3.org/2000/svg" onload="window.pwned=5"><script>window.pwned=6</script></svg>`
)

// world is a state directory with a busybox image, a sandbox "docs" with
// one exception over Documents, two closed sessions (the second modifies
// note.txt and plants the hostile files), and a server over it.
type world struct {
	t     *testing.T
	root  string
	store string // the ledger's URL ("": badger in root)
	srv   *Server
	ts    *httptest.Server
	ex    string
	byKey map[string]uint64 // record id by path, of the pending records
}

func newWorld(t *testing.T, extra int) *world {
	t.Helper()
	return newWorldOn(t, extra, "")
}

// newWorldOn is newWorld with the ledger at store ("": badger in the root).
func newWorldOn(t *testing.T, extra int, store string) *world {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("serve tests mount overlay filesystems and need root (CI runs them as root)")
	}
	w := &world{t: t, root: filepath.Join(t.TempDir(), "state"), store: store, byKey: map[string]uint64{}}
	ctx := context.Background()
	w.withEnv(func(e *persist.Env) {
		if _, err := e.ImportImage(ctx, "base", persist.ImageSource{Dir: busyboxRootfs(t)}); err != nil {
			t.Fatal(err)
		}
		if err := e.CreateSandbox("docs", "base"); err != nil {
			t.Fatal(err)
		}
		x := &exceptions.Exception{Sandbox: "docs", Patterns: []string{docs + "**"}, Reason: "keep <b>documents</b>"}
		if _, err := e.AddException(context.Background(), x); err != nil {
			t.Fatal(err)
		}
		w.ex = x.ID
		risky := &exceptions.Exception{Sandbox: "docs", Patterns: []string{"/home/user/.bashrc"}, Reason: "forced <i>on purpose</i>", Forced: true}
		if _, err := e.AddException(context.Background(), risky); err != nil {
			t.Fatal(err)
		}
	})
	w.session(map[string]string{noteName: "one\ntwo\nthree\n"})
	w.withEnv(func(e *persist.Env) {
		if _, err := e.ApproveAll(ctx, "docs", "first"); err != nil {
			t.Fatal(err)
		}
	})
	files := map[string]string{
		noteName: "one\n2\nthree\n" + preContent, scriptName: "x", imgName: imgContent, ctrlName: "c",
		badUTF8Name: "b", svgName: svgContent, pngName: string(pngBytes(t)),
	}
	for i := range extra {
		files[docs+"many/"+string(rune('a'+i/26))+string(rune('a'+i%26))] = "many"
	}
	w.session(files)
	w.withEnv(func(e *persist.Env) {
		recs, err := e.ReviewList(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			w.byKey[r.Path] = r.ID
		}
	})
	w.srv, w.ts = w.server("alice")
	return w
}

// session opens docs, writes files (paths inside the sandbox) and closes.
func (w *world) session(files map[string]string) {
	w.t.Helper()
	ctx := context.Background()
	w.withEnv(func(e *persist.Env) {
		o, err := e.OpenSandbox(ctx, "docs")
		if err != nil {
			w.t.Fatal(err)
		}
		for p, body := range files {
			full := filepath.Join(o.Path, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				w.t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
				w.t.Fatal(err)
			}
		}
		if _, err := e.CloseSandbox(ctx, "docs", persist.CloseOptions{}); err != nil {
			w.t.Fatal(err)
		}
	})
}

// withEnv opens the state directory as a CLI command would.
func (w *world) withEnv(fn func(e *persist.Env)) {
	w.t.Helper()
	e := w.openEnv()
	defer e.Close()
	fn(e)
}

func (w *world) openEnv() *persist.Env {
	w.t.Helper()
	e, err := persist.OpenEnv(context.Background(), persist.Options{Root: w.root, Store: w.store, LockTimeout: 10 * time.Second})
	if err != nil {
		w.t.Fatal(err)
	}
	return e
}

// server starts a server over the world's state on a loopback port.
func (w *world) server(reviewer string) (*Server, *httptest.Server) {
	w.t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	srv, err := New(Config{Persist: persist.Options{Root: w.root, Store: w.store, LockTimeout: 300 * time.Millisecond},
		Reviewer: reviewer, Addr: ts.Listener.Addr().String()})
	if err != nil {
		w.t.Fatal(err)
	}
	srv.retryWait = time.Second
	ts.Config.Handler = srv
	ts.Start()
	w.t.Cleanup(ts.Close)
	return srv, ts
}

func (w *world) record(id uint64) *persist.Record {
	w.t.Helper()
	var r *persist.Record
	w.withEnv(func(e *persist.Env) {
		rep, err := e.ReviewShow(id)
		if err != nil {
			w.t.Fatal(err)
		}
		r = rep.Record
	})
	return r
}

// client is a browser-like client: a cookie jar and no redirects followed
// unless asked.
type client struct {
	w    *world
	c    *http.Client
	csrf string
}

func (w *world) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{w: w, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// login opens the token URL and reads the CSRF token off a page.
func (c *client) login() *client {
	c.w.t.Helper()
	resp := c.get(c.w.srv.LoginURL())
	if resp.StatusCode != http.StatusSeeOther {
		c.w.t.Fatalf("login: %s", resp.Status)
	}
	body := c.body(c.get("/queue"))
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(body)
	if m == nil {
		c.w.t.Fatalf("no csrf token on the queue page:\n%s", body)
	}
	c.csrf = m[1]
	return c
}

func (c *client) url(p string) string {
	if strings.HasPrefix(p, "http") {
		return p
	}
	return c.w.ts.URL + p
}

func (c *client) do(req *http.Request) *http.Response {
	c.w.t.Helper()
	resp, err := c.c.Do(req)
	if err != nil {
		c.w.t.Fatal(err)
	}
	c.w.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (c *client) get(p string) *http.Response {
	c.w.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.url(p), nil)
	return c.do(req)
}

// post sends a form; csrf "" leaves the token out.
func (c *client) post(p string, form url.Values, header map[string]string) *http.Response {
	c.w.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.url(p), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return c.do(req)
}

// eachPage gets first and then every page its "next page" links lead
// to, calling fn with each page's number (from 0) and body; a page
// numbered above most ends the test (the links go round).
func (c *client) eachPage(first string, most int, fn func(n int, body string)) {
	c.w.t.Helper()
	next := regexp.MustCompile(`<a id="next-page" href="([^"]+)"`)
	page := first
	for n := 0; page != ""; n++ {
		body := c.body(c.get(page))
		fn(n, body)
		page = ""
		if m := next.FindStringSubmatch(body); m != nil {
			page = html.UnescapeString(m[1])
		}
		if n > most {
			c.w.t.Fatalf("%s: more than %d pages", first, most+1)
		}
	}
}

func (c *client) body(resp *http.Response) string {
	c.w.t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.w.t.Fatal(err)
	}
	return string(b)
}

func pngBytes(t *testing.T) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	img.Set(0, 0, color.RGBA{255, 0, 0, 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
