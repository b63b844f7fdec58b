package serve

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/persist"
)

// The JSON API under /api/ answers with the shapes of the CLI's --json
// output, field for field (cmd/spillway's TestServeAPIMatchesCLI compares
// them): /api/sandboxes is `ls --json`, /api/review `review ls --json` (a
// page of it, with a Link header to the next), /api/record/ID `review show
// ID --json`.

type recordJSON struct {
	ID        uint64            `json:"id"`
	Sandbox   string            `json:"sandbox"`
	Session   uint64            `json:"session"`
	Path      string            `json:"path"`
	PathBytes []byte            `json:"path_bytes,omitempty"`
	Kind      change.Kind       `json:"kind"`
	Type      change.FileType   `json:"type"`
	Size      int64             `json:"size"`
	Mode      string            `json:"mode"`
	Digest    string            `json:"digest"`
	Exception string            `json:"exception"`
	Status    change.Status     `json:"status"`
	Reason    string            `json:"reason,omitempty"`
	Review    change.ReviewMode `json:"review"`
	Purged    bool              `json:"purged,omitempty"`
	Mtime     time.Time         `json:"mtime"`
	Link      string            `json:"link,omitempty"`
}

func toRecordJSON(r *persist.Record) recordJSON {
	text, exact := escape.JSON(r.Path)
	return recordJSON{ID: r.ID, Sandbox: r.Sandbox, Session: r.Session, Path: text, PathBytes: exact, Kind: r.Kind,
		Type: r.Type, Size: r.Size, Mode: fmt.Sprintf("%04o", r.Mode), Digest: r.Digest, Exception: r.Exception,
		Status: r.Status, Reason: r.Reason, Review: r.Review, Purged: r.Purged, Mtime: r.Mtime, Link: r.Link}
}

type exceptionJSON struct {
	ID        string            `json:"id"`
	Sandbox   string            `json:"sandbox"`
	Patterns  []string          `json:"patterns"`
	Reason    string            `json:"reason"`
	Created   time.Time         `json:"created"`
	Expires   *time.Time        `json:"expires"`
	Review    change.ReviewMode `json:"review"`
	State     string            `json:"state"`
	Forced    bool              `json:"forced"`
	Limits    exceptions.Limits `json:"limits"`
	AllowExec bool              `json:"allow_exec"`
	AllowSym  bool              `json:"allow_symlinks"`
	Revoked   *time.Time        `json:"revoked,omitempty"`
	RevokedBy string            `json:"revoked_by,omitempty"`
	RevokeWhy string            `json:"revoke_reason,omitempty"`
}

func toExceptionJSON(x *exceptions.Exception, now time.Time) exceptionJSON {
	j := exceptionJSON{ID: x.ID, Sandbox: x.Sandbox, Patterns: x.Patterns, Reason: x.Reason, Created: x.Created,
		Review: x.Review, State: x.State(now), Forced: x.Forced, Limits: x.EffectiveLimits(),
		AllowExec: x.AllowExec, AllowSym: x.AllowSymlinks, RevokedBy: x.RevokedBy, RevokeWhy: x.RevokeReason}
	if !x.Expires.IsZero() {
		e := x.Expires
		j.Expires = &e
	}
	if !x.Revoked.IsZero() {
		r := x.Revoked
		j.Revoked = &r
	}
	return j
}

type reviewShowJSON struct {
	recordJSON
	DecidedBy string         `json:"decided_by,omitempty"`
	DecidedAt *time.Time     `json:"decided_at,omitempty"`
	Note      string         `json:"note,omitempty"`
	InEffect  bool           `json:"in_effect"`
	Rule      *exceptionJSON `json:"rule"`
	Previous  *recordJSON    `json:"previous"`
	Diff      string         `json:"diff"`
	Binary    bool           `json:"binary"`
	DiffNote  string         `json:"diff_note,omitempty"`
}

func toReviewShowJSON(rep *persist.ReviewReport, now time.Time) reviewShowJSON {
	r := rep.Record
	j := reviewShowJSON{recordJSON: toRecordJSON(r), DecidedBy: r.DecidedBy, Note: r.Note, InEffect: rep.InEffect,
		Diff: rep.Diff.Text, Binary: rep.Diff.Binary, DiffNote: rep.Diff.Note}
	if !r.DecidedAt.IsZero() {
		at := r.DecidedAt
		j.DecidedAt = &at
	}
	if rep.Exception != nil {
		x := toExceptionJSON(rep.Exception, now)
		j.Rule = &x
	}
	if rep.Previous != nil {
		p := toRecordJSON(rep.Previous)
		j.Previous = &p
	}
	return j
}

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
	f := filterFrom(r)
	q := r.URL.Query()
	after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	out := []recordJSON{}
	var next uint64
	err := s.withEnv(r.Context(), func(e *persist.Env) error {
		return f.eachPending(r, e, func(rec *persist.Record) error {
			if rec.ID <= after {
				return nil
			}
			if len(out) == limit {
				next = out[limit-1].ID
				return persist.ErrStop
			}
			out = append(out, toRecordJSON(rec))
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
		http.NotFound(w, r)
		return
	}
	var out reviewShowJSON
	err := s.withEnv(r.Context(), func(e *persist.Env) error {
		rep, err := e.ReviewShow(id)
		if err == nil {
			out = toReviewShowJSON(rep, e.Now())
		}
		return err
	})
	if err != nil {
		s.apiFail(w, err)
		return
	}
	writeJSON(w, out)
}
