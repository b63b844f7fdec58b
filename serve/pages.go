package serve

import (
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/persist"
)

func (s *Server) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /{$}", s.sandboxes)
	m.HandleFunc("GET /queue", s.queue)
	m.HandleFunc("GET /next", s.next)
	m.HandleFunc("GET /record/{id}", s.record)
	m.HandleFunc("GET /record/{id}/preview", s.preview)
	m.HandleFunc("GET /record/{id}/raw", s.raw)
	m.HandleFunc("POST /record/{id}/{verb}", s.decide)
	m.HandleFunc("GET /history", s.history)
	m.HandleFunc("GET /exceptions", s.exceptions)
	m.HandleFunc("GET /audit", s.audit)
	m.HandleFunc("GET /recovery", s.recovery)
	m.HandleFunc("GET /api/sandboxes", s.apiSandboxes)
	m.HandleFunc("GET /api/review", s.apiReview)
	m.HandleFunc("GET /api/record/{id}", s.apiRecord)
	s.mux = m
}

func (s *Server) sandboxes(w http.ResponseWriter, r *http.Request) {
	var sbs []persist.SandboxInfo
	err := s.withEnv(r.Context(), func(e *persist.Env) (err error) {
		sbs, err = e.Sandboxes(r.Context())
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "sandboxes", sbs)
}

type historyPage struct {
	Sandbox, Path string
	Records       []*persist.Record
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := historyPage{Sandbox: q.Get("sandbox"), Path: q.Get("path")}
	if p.Sandbox == "" || p.Path == "" {
		s.fail(w, r, fmt.Errorf("%w: the history of a path needs sandbox= and path=", errdefs.ErrInvalidArgument))
		return
	}
	if !strings.HasPrefix(p.Path, "/") || path.Clean(p.Path) != p.Path {
		s.fail(w, r, fmt.Errorf("%w: path=%q is not a clean absolute path", errdefs.ErrInvalidArgument, p.Path))
		return
	}
	err := s.withEnv(r.Context(), func(e *persist.Env) (err error) {
		p.Records, err = e.History(r.Context(), p.Sandbox, p.Path)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "history", p)
}

type exceptionRow struct {
	Rep   *persist.ExceptionReport
	State string
	Lint  []exceptions.Finding
}

type exceptionsPage struct {
	Sandbox string
	All     bool
	Rows    []exceptionRow
	After   string // the page shows the rules numbered above this one
	Next    string // the After of the next page; "": none
}

// exceptionsPageSize is how many rules a page shows (a variable for the
// tests). Each row adds up what its rule let through, reading every
// record of it: across a fleet of 10,000 sandboxes with 300 records each,
// all rules on one page took 32 s.
var exceptionsPageSize = 50

// exceptions lists the rules (active ones, or all) with their lint
// findings and what each let through, as `exception ls`, `lint` and
// `show` report them, a page at a time by rule number (after=exN).
func (s *Server) exceptions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := exceptionsPage{Sandbox: q.Get("sandbox"), All: q.Get("all") != "", After: q.Get("after")}
	var after uint64
	if p.After != "" {
		n, err := exceptions.IDNumber(p.After)
		if err != nil {
			s.fail(w, r, fmt.Errorf("%w: after: %v", errdefs.ErrInvalidArgument, err))
			return
		}
		after = n
	}
	err := s.withLedger(r.Context(), func(e *persist.Env) error {
		xs, err := e.Exceptions(p.Sandbox, p.All)
		if err != nil {
			return err
		}
		for _, x := range xs {
			if n, err := exceptions.IDNumber(x.ID); err != nil || n <= after {
				continue
			}
			if len(p.Rows) == exceptionsPageSize {
				p.Next = p.Rows[len(p.Rows)-1].Rep.Exception.ID
				break
			}
			rep, err := e.ShowException(r.Context(), x.ID)
			if err != nil {
				return err
			}
			p.Rows = append(p.Rows, exceptionRow{Rep: rep, State: x.State(e.Now()), Lint: exceptions.Lint(x)})
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "exceptions", p)
}

// auditPageSize is how many audit entries a page shows (a variable for
// the tests).
var auditPageSize = 200

type auditPage struct {
	Sandbox  string
	Host     string // only the entries written on this host (persist.HostOf)
	Checked  bool   // the chains were verified for this page (?verify=1)
	Verified bool
	Problem  string
	Events   []*persist.Event
	After    uint64 // the page shows the entries numbered above After
	Next     uint64 // the After of the next page; 0: none
}

// audit shows the audit log, oldest first, a page at a time, and with
// ?verify=1 the result of `audit verify`. Verifying reads every entry of
// the ledger (200,000 entries on PostgreSQL: 3.2 s here), so a page
// does it only when asked.
func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, err := numberParam(q, "after")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := auditPage{Sandbox: q.Get("sandbox"), Host: q.Get("host"), After: after, Checked: q.Get("verify") != ""}
	if s.cfg.Sandbox != "" {
		p.Sandbox = s.cfg.Sandbox
	}
	if s.cfg.Host != "" {
		p.Host = s.cfg.Host
	}
	err = s.withLedger(r.Context(), func(e *persist.Env) (err error) {
		// As log does: 404, not an empty log.
		if err := e.CheckLogScope(r.Context(), p.Host, p.Sandbox); err != nil {
			return err
		}
		if p.Checked {
			prob, err := e.VerifyAudit(r.Context())
			if err != nil {
				return err
			}
			if prob != nil {
				p.Problem = prob.Message
			}
			p.Verified = prob == nil
		}
		hosts := e.HostOf()
		return e.ForEachEventAfter(r.Context(), p.Sandbox, p.After, func(ev *persist.Event) error {
			if p.Host != "" {
				if ok, err := hosts.EventMatches(ev, p.Host); err != nil || !ok {
					return err
				}
			}
			if len(p.Events) == auditPageSize {
				p.Next = p.Events[auditPageSize-1].Seq
				return persist.ErrStop
			}
			p.Events = append(p.Events, ev)
			return nil
		})
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "audit", p)
}
