package persist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/store"
)

// MaxDiffSize is the largest file review show diffs as text.
const MaxDiffSize = 1 << 20

// Diff compares a record's content with the version it replaces. Text is a
// unified diff of text files up to MaxDiffSize; otherwise Note says why there
// is none and the sizes and digests stand for the content. The file names in
// the two header lines are escaped (escape.Name); the other lines come from
// inside a sandbox as they are: escape them before printing on a terminal.
type Diff struct {
	Text      string
	Binary    bool
	Note      string
	OldSize   int64
	NewSize   int64
	OldDigest string
	NewDigest string
}

// diffRecords compares prev (nil: no earlier record) with r.
func (e *Env) diffRecords(prev, r *store.Record) (*Diff, error) {
	d := &Diff{NewSize: r.Size, NewDigest: r.Digest}
	if prev != nil {
		d.OldSize, d.OldDigest = prev.Size, prev.Digest
	}
	for _, x := range []*store.Record{prev, r} {
		switch {
		case x == nil || x.Kind == change.KindDelete:
		case x.Status == change.StatusRefused:
			d.Note = fmt.Sprintf("refused (%s): no content was kept", x.Reason)
			return d, nil
		case x.Type != change.TypeFile:
			d.Note = fmt.Sprintf("r%d is a %s: no content to compare", x.ID, x.Type)
			return d, nil
		case x.Size > MaxDiffSize:
			d.Note = "larger than 1 MiB: compare sizes and digests"
			return d, nil
		}
	}
	if prev == nil && r.Kind == change.KindModify {
		d.Note = "the previous version is the image's: the diff shows the whole new file"
	}
	oldText, err := e.recordContent(prev)
	if errors.Is(err, ErrCorrupt) {
		return nil, err
	} else if err != nil {
		d.Note = err.Error()
		return d, nil
	}
	newText, err := e.recordContent(r)
	if errors.Is(err, ErrCorrupt) {
		return nil, err
	} else if err != nil {
		d.Note = err.Error()
		return d, nil
	}
	if isBinary(oldText) || isBinary(newText) {
		d.Binary, d.Note = true, "binary content: compare sizes and digests"
		return d, nil
	}
	ud := difflib.UnifiedDiff{
		A:        splitLines(string(oldText)),
		B:        splitLines(string(newText)),
		FromFile: versionLabel(prev),
		ToFile:   versionLabel(r),
		Context:  3,
	}
	d.Text, err = difflib.GetUnifiedDiffString(ud)
	return d, err
}

// NoNewline follows a diff line that ends its file without a newline.
const NoNewline = `\ No newline at end of file`

// splitLines splits text after each newline; a last line without one is
// marked as diff(1) marks it (difflib.SplitLines would add a blank line).
func splitLines(s string) []string {
	lines := strings.SplitAfter(s, "\n")
	if last := lines[len(lines)-1]; last == "" {
		lines = lines[:len(lines)-1]
	} else {
		lines[len(lines)-1] = last + "\n" + NoNewline + "\n"
	}
	return lines
}

func versionLabel(r *store.Record) string {
	if r == nil || r.Kind == change.KindDelete {
		return "/dev/null"
	}
	return fmt.Sprintf("%s (r%d, session %d)", escape.Name(r.Path), r.ID, r.Session)
}

// recordContent reads the content a record kept (none for a delete),
// checked against its digest: a mismatch is ErrCorrupt naming the record.
func (e *Env) recordContent(r *store.Record) ([]byte, error) {
	if r == nil || r.Digest == "" {
		return nil, nil
	}
	rc, err := e.OpenRecord(r)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// isBinary says whether content is not text: a NUL byte or invalid UTF-8.
func isBinary(b []byte) bool {
	return bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b)
}
