package serve

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/persist"
)

// diffLine is one line of a unified diff, escaped, with its class.
type diffLine struct {
	Class, Text string
}

type recordPage struct {
	Filter     filter
	Rep        *persist.ReviewReport
	Pending    bool // a reviewer may decide it
	ExState    string
	Lint       []exceptions.Finding
	Lines      []diffLine
	Image      string // the checked image type of the content, "" when none
	Prev, Next uint64 // neighbours in the filtered queue; 0: none
	// Part is the sqlite database or git repository a pending record is
	// part of, with its companions of the session that its decision would
	// split (persist.SplitDecisions): deciding one alone can leave it
	// inconsistent; for a directory, the records beneath it (nil: none).
	Part *persist.SplitDecision
}

func recordID(r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(strings.TrimPrefix(r.PathValue("id"), "r"), 10, 64)
	return id, err == nil && id > 0
}

func (s *Server) record(w http.ResponseWriter, r *http.Request) {
	id, ok := recordID(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	f := s.filterFrom(r)
	p := recordPage{Filter: f}
	err := s.withLedger(r.Context(), func(e *persist.Env) error {
		rep, err := e.ReviewShow(id)
		if err != nil {
			return err
		}
		p.Rep = rep
		p.Pending = persist.Reviewable(rep.Sandbox, rep.Record)
		if x := rep.Exception; x != nil {
			p.ExState = x.State(e.Now())
			p.Lint = exceptions.Lint(x)
		}
		p.Image, err = sniffRecord(e, rep.Record)
		if err != nil {
			return err
		}
		if p.Pending {
			// The decision that changes the state: approving a held-back
			// record, rejecting one in effect.
			at := change.StatusRejected
			if rep.Record.Review == change.ReviewBefore {
				at = change.StatusApproved
			}
			parts, err := e.SplitDecisions(r.Context(), &persist.Decided{Records: []*persist.Record{rep.Record}}, at)
			if err != nil {
				return err
			}
			if len(parts) > 0 {
				p.Part = &parts[0]
			}
		}
		// j/k neighbours.
		p.Prev, p.Next, err = f.neighbours(r, e, id)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.Lines = diffLines(p.Rep.Diff.Text)
	s.render(w, r, http.StatusOK, "record", p)
}

// diffLines splits a unified diff into escaped lines with a class each.
func diffLines(text string) []diffLine {
	if text == "" {
		return nil
	}
	var out []diffLine
	for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		c := "ctx"
		switch {
		case i < 2:
			c = "hdr" // names escaped by persist already
			out = append(out, diffLine{c, l})
			continue
		case strings.HasPrefix(l, "@@"):
			c = "hunk"
		case strings.HasPrefix(l, "+"):
			c = "add"
		case strings.HasPrefix(l, "-"):
			c = "del"
		}
		if l != persist.NoNewline {
			l = escape.Name(l)
		}
		out = append(out, diffLine{c, l})
	}
	return out
}

// decide approves or rejects one record, as `review approve ID --note` and
// `review reject ID --reason` do, then goes on to the next record of the
// filtered queue.
func (s *Server) decide(w http.ResponseWriter, r *http.Request) {
	id, ok := recordID(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	verb := r.PathValue("verb")
	if verb != "approve" && verb != "reject" {
		http.NotFound(w, r)
		return
	}
	text := r.PostFormValue("text")
	shown := r.PostFormValue("shown")
	err := s.withEnv(r.Context(), func(e *persist.Env) error {
		// Any host of a shared ledger can rewrite the record between the
		// page and the click: a form of a page (field "shown") decides
		// only on the record the page showed, compared in the decision's
		// own transaction. (A script's POST without it decides by id, as
		// `review approve ID` does.)
		var check func(*persist.Record) error
		if shown != "" {
			check = func(rec *persist.Record) error {
				if shown != shownRecord(rec) {
					return errclass.Errorf(errdefs.ErrFailedPrecondition, "record r%d changed since the page showed it: reload the page and decide again", id)
				}
				return nil
			}
		}
		var err error
		switch verb {
		case "approve":
			_, err = e.ApproveChecked(r.Context(), []uint64{id}, text, check)
		case "reject":
			_, err = e.RejectChecked(r.Context(), []uint64{id}, text, check)
		}
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f := s.filterFrom(r)
	to := "/next?" + string(f.With("after", strconv.FormatUint(id, 10)))
	if r.PostFormValue("back") == "queue" {
		to = "/queue"
		if q := f.Query(); q != "" {
			to += "?" + string(q)
		}
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// shownRecord fingerprints what a record page and a queue row show of a
// record, for their decision forms (field "shown").
func shownRecord(r *persist.Record) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%q\x00%d\x00%q\x00%q\x00%q\x00%d\x00%o\x00%q\x00%q\x00%q\x00%q",
		r.ID, r.Sandbox, r.Session, r.Path, r.Kind, r.Type, r.Size, r.Mode, r.Digest, r.Link, r.Exception, r.Review)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// maxPreview is the largest image shown inline.
const maxPreview = 32 << 20

// imageType names the image format of b from its magic bytes: PNG, JPEG,
// GIF or WebP, never anything else (no SVG: it can carry script).
func imageType(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "image/png"
	case bytes.HasPrefix(b, []byte("\xff\xd8\xff")):
		return "image/jpeg"
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return "image/gif"
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "image/webp"
	}
	return ""
}

// sniffRecord returns the checked image type of a record's content.
func sniffRecord(e *persist.Env, rec *persist.Record) (string, error) {
	if rec.Type != change.TypeFile || rec.Kind == change.KindDelete || rec.Digest == "" || rec.Size > maxPreview || rec.Size < 12 {
		return "", nil
	}
	rc, err := e.OpenRecord(rec)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	head := make([]byte, 12)
	if _, err := io.ReadFull(rc, head); err != nil {
		return "", err
	}
	return imageType(head), nil
}

// preview serves a record's content as the image type its magic bytes
// name, after reading and checking all of it; anything else is 404.
func (s *Server) preview(w http.ResponseWriter, r *http.Request) {
	id, ok := recordID(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	var body []byte
	err := s.withLedger(r.Context(), func(e *persist.Env) error {
		rep, err := e.ReviewShow(id)
		if err != nil {
			return err
		}
		rec := rep.Record
		if typ, err := sniffRecord(e, rec); err != nil || typ == "" {
			return err
		}
		rc, err := e.OpenRecord(rec)
		if err != nil {
			return err
		}
		defer rc.Close()
		body, err = io.ReadAll(io.LimitReader(rc, maxPreview+1))
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	typ := imageType(body)
	if typ == "" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", typ)
	w.Header().Set("Content-Disposition", "inline")
	w.Write(body)
}

// raw serves a record's content for download: application/octet-stream,
// as an attachment, never rendered. The content is read through the
// digest-checking reader after the state directory is released; a
// mismatch aborts the response.
func (s *Server) raw(w http.ResponseWriter, r *http.Request) {
	id, ok := recordID(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	var rc io.ReadCloser
	var size int64
	err := s.withLedger(r.Context(), func(e *persist.Env) error {
		rep, err := e.ReviewShow(id)
		if err != nil {
			return err
		}
		rec := rep.Record
		if rec.Type != change.TypeFile || rec.Kind == change.KindDelete || rec.Digest == "" {
			return &persist.NotFoundError{Kind: "content of record", Name: "r" + strconv.FormatUint(id, 10)}
		}
		size = rec.Size
		rc, err = e.OpenRecord(rec)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="r`+strconv.FormatUint(id, 10)+`.bin"`)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	if _, err := io.Copy(w, rc); err != nil {
		panic(http.ErrAbortHandler)
	}
}
