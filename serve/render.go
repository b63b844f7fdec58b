package serve

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/units"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// funcs are the helpers templates use. Names from a sandbox go through
// name (control characters and invalid UTF-8 escaped visibly); the
// template engine then escapes them for HTML.
var funcs = template.FuncMap{
	"name": escape.Name,
	"size": units.FormatSize,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"list":  func(s ...string) []string { return s },
	"shown": shownRecord,
	"mode":  func(m uint32) string { return fmt.Sprintf("%04o", m) },
	"join": func(ss []string) string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = escape.Name(s)
		}
		return strings.Join(out, ", ")
	},
}

// parsePages parses every page with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, err
		}
		out[base] = t
	}
	return out, nil
}

// page is what every template gets: the page's own data and the session's
// CSRF token for its forms.
type page struct {
	Title    string
	CSRF     string
	Reviewer string
	Data     any
}

// render writes page name with code; it renders into a buffer first so
// that a template error never sends half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	t := s.pages[name]
	p := page{Title: name, Data: data, Reviewer: s.cfg.Reviewer}
	if sess := sessionFrom(r.Context()); sess != nil {
		p.CSRF = sess.csrf
	}
	var b bytes.Buffer
	if err := t.Execute(&b, p); err != nil {
		plainError(w, http.StatusInternalServerError, "spillway serve: render "+name+": "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}
