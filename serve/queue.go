package serve

import (
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spillway/spillway/persist"
)

// pageSize is how many records a queue page shows.
const pageSize = 50

// filter narrows the review queue; its fields come from the query string.
type filter struct {
	Sandbox, Exception, Kind, Prefix string
	Host                             string // only records written by this host's closes
}

// filterFrom reads the filter of a request; the server's scope
// (Config.Sandbox, Config.Host) overrides what the request asks.
func (s *Server) filterFrom(r *http.Request) filter {
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		q = r.PostForm
	}
	f := filter{Sandbox: q.Get("sandbox"), Exception: q.Get("exception"), Kind: q.Get("kind"), Prefix: q.Get("prefix"), Host: q.Get("host")}
	if s.cfg.Sandbox != "" {
		f.Sandbox = s.cfg.Sandbox
	}
	if s.cfg.Host != "" {
		f.Host = s.cfg.Host
	}
	return f
}

func (f filter) match(r *persist.Record) bool {
	return (f.Exception == "" || r.Exception == f.Exception) && (f.Kind == "" || string(r.Kind) == f.Kind) &&
		strings.HasPrefix(r.Path, f.Prefix)
}

// Query is the filter as a query string (without "?"), for links: every
// value is URL-encoded, so the template may put it into a URL as it is.
func (f filter) Query() template.URL {
	v := url.Values{}
	for k, s := range map[string]string{"sandbox": f.Sandbox, "exception": f.Exception, "kind": f.Kind, "prefix": f.Prefix, "host": f.Host} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return template.URL(v.Encode())
}

// With is the filter's query string with one more parameter.
func (f filter) With(k, val string) template.URL {
	q := f.Query()
	if q != "" {
		q += "&"
	}
	return q + template.URL(url.QueryEscape(k)+"="+url.QueryEscape(val))
}

// eachPending calls fn for the pending records that match f with ids
// above after (0: all), by ascending id, through persist's ReviewEach
// (what `review ls` reads): any page costs what review ls's first page
// costs. fn may return persist.ErrStop.
func (f filter) eachPending(r *http.Request, e *persist.Env, after uint64, fn func(*persist.Record) error) error {
	// A host the ledger does not know is 404, as review ls --host refuses
	// it, not an empty queue (a mistyped host looked like one with nothing
	// to review). An unknown sandbox is ReviewEach's 404.
	if err := e.CheckScope(r.Context(), f.Host, ""); err != nil {
		return err
	}
	hosts := e.HostOf()
	return e.ReviewEach(r.Context(), f.Sandbox, after, func(rec *persist.Record) error {
		if !f.match(rec) {
			return nil
		}
		if f.Host != "" {
			if h, err := hosts.Record(rec); err != nil || h != f.Host {
				return err
			}
		}
		return fn(rec)
	})
}

// neighbours returns the records of the filtered queue just before and
// just after id (0: none). The next one is a scan from id on; the one
// before, scans of windows of ids below id, each four times the last: a
// record deep in a queue of millions costs a few short scans, not one
// over every record before it.
func (f filter) neighbours(r *http.Request, e *persist.Env, id uint64) (prev, next uint64, err error) {
	err = f.eachPending(r, e, id, func(rec *persist.Record) error {
		next = rec.ID
		return persist.ErrStop
	})
	for window := uint64(64); err == nil && prev == 0; window *= 4 {
		var lo uint64 // the window is the ids above lo, below id
		if window < id && window < 1<<60 {
			lo = id - window
		}
		err = f.eachPending(r, e, lo, func(rec *persist.Record) error {
			if rec.ID >= id {
				return persist.ErrStop
			}
			prev = rec.ID
			return nil
		})
		if lo == 0 {
			break
		}
	}
	return prev, next, err
}

type queuePage struct {
	Filter  filter
	Records []*persist.Record
	After   uint64
	Next    uint64 // the after= of the next page; 0: none
}

func (s *Server) queue(w http.ResponseWriter, r *http.Request) {
	f := s.filterFrom(r)
	after, err := numberParam(r.URL.Query(), "after")
	if err == nil {
		err = f.check()
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := queuePage{Filter: f, After: after, Records: []*persist.Record{}}
	err = s.withLedger(r.Context(), func(e *persist.Env) error {
		return f.eachPending(r, e, after, func(rec *persist.Record) error {
			if len(p.Records) == pageSize {
				p.Next = p.Records[pageSize-1].ID
				return persist.ErrStop
			}
			p.Records = append(p.Records, rec)
			return nil
		})
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "queue", p)
}

// next redirects to the first pending record after the given id that
// matches the filter, or to the queue when there is none.
func (s *Server) next(w http.ResponseWriter, r *http.Request) {
	f := s.filterFrom(r)
	after, err := numberParam(r.URL.Query(), "after")
	if err == nil {
		err = f.check()
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var found uint64
	err = s.withLedger(r.Context(), func(e *persist.Env) error {
		return f.eachPending(r, e, after, func(rec *persist.Record) error {
			found = rec.ID
			return persist.ErrStop
		})
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	to := "/queue"
	if found != 0 {
		to = "/record/" + strconv.FormatUint(found, 10)
	}
	if q := f.Query(); q != "" {
		to += "?" + string(q)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}
