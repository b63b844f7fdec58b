package serve

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/view"
)

// The JSON API under /api/ answers with the shapes of the CLI's --json
// output, field for field (cmd/spillway's TestServeAPIMatchesCLI compares
// them): /api/sandboxes is `ls --json`, /api/review `review ls --json` (a
// page of it, with a Link header to the next), /api/record/ID `review show
// ID --json`.

// writeJSON answers with v as JSON (never sniffed as anything else).
func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		plainError(w, http.StatusInternalServerError, "spillway serve: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

// apiFail answers an API request that failed: {"error": …} with the
// status the pages use (503 and Retry-After when the state is busy).
func (s *Server) apiFail(w http.ResponseWriter, err error) {
	err = asBusy(err)
	code := statusOf(err)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(s.retryWait.Seconds())))
	}
	b, _ := json.Marshal(map[string]string{"error": err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func (s *Server) apiSandboxes(w http.ResponseWriter, r *http.Request) {
	var sbs []persist.SandboxInfo
	err := s.withEnv(r.Context(), func(e *persist.Env) (err error) {
		sbs, err = e.Sandboxes(r.Context())
		return err
	})
	if err != nil {
		s.apiFail(w, err)
		return
	}
	writeJSON(w, sbs)
}

// apiReview is one page of the filtered review queue (?after=ID,
// ?limit=N up to 1000, the queue page's filters).
func (s *Server) apiReview(w http.ResponseWriter, r *http.Request) {
	f := s.filterFrom(r)
	q := r.URL.Query()
	after, err := numberParam(q, "after")
	if err == nil {
		err = f.check()
	}
	if err != nil {
		s.apiFail(w, err)
		return
	}
	n, err := numberParam(q, "limit")
	if err != nil {
		s.apiFail(w, err)
		return
	}
	if q.Has("limit") && n == 0 {
		s.apiFail(w, errclass.Errorf(errdefs.ErrInvalidArgument, "limit=0: give 1 to 1000 (more is taken as 1000)"))
		return
	}
	limit := int(min(n, 1000))
	if limit == 0 {
		limit = 1000
	}
	out := []view.Record{}
	var next uint64
	err = s.withLedger(r.Context(), func(e *persist.Env) error {
		hosts := e.HostOf() // each row names its host, as review ls --json does
		return f.eachPending(r, e, after, func(rec *persist.Record) error {
			if len(out) == limit {
				next = out[limit-1].ID
				return persist.ErrStop
			}
			v := view.NewRecord(rec)
			var err error
			if v.Host, err = hosts.Record(rec); err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	})
	if err != nil {
		s.apiFail(w, err)
		return
	}
	if next != 0 {
		w.Header().Set("Link", fmt.Sprintf(`</api/review?%s>; rel="next"`, string(f.With("after", strconv.FormatUint(next, 10)))+"&limit="+strconv.Itoa(limit)))
	}
	writeJSON(w, out)
}

func (s *Server) apiRecord(w http.ResponseWriter, r *http.Request) {
	id, ok := recordID(r)
	if !ok {
		s.apiFail(w, fmt.Errorf("%w: bad record id %q: want rN or N", errdefs.ErrInvalidArgument, r.PathValue("id")))
		return
	}
	var out view.ReviewShow
	err := s.withLedger(r.Context(), func(e *persist.Env) error {
		rep, err := e.ReviewShow(id)
		if err == nil {
			out = view.NewReviewShow(rep, e.Now())
		}
		return err
	})
	if err != nil {
		s.apiFail(w, err)
		return
	}
	writeJSON(w, out)
}
