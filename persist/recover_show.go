package persist

import (
	"context"
	"fmt"
	"io"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/store"
)

// RecoverReport is what `recover show` prints: the entry and, for a text
// file up to MaxDiffSize, a unified diff against the version in the
// persisted state (from /dev/null when there is none), as `review show`
// shows a record.
type RecoverReport struct {
	Entry   RecoverEntry
	InState *store.Record // the persisted version of the path, if any
	Diff    *Diff
}

// RecoverShow reports path in the recovery area (session 0: the newest
// session that holds it).
func (e *Env) RecoverShow(ctx context.Context, sandbox, path string, session uint64) (*RecoverReport, error) {
	f, err := e.findRecoverable(ctx, sandbox, session, path)
	if err != nil {
		return nil, err
	}
	rep := &RecoverReport{Entry: f.entry, Diff: &Diff{}}
	if f.entry.Path == "" {
		rep.Entry = RecoverEntry{Session: f.rs.n, Path: path, PathBytes: exactBytes(path), Type: change.TypeDir}
		rep.Diff.Note = fmt.Sprintf("a directory: %s beneath it (spillway recover ls %s %s)", plural(len(f.beneath), "change"), sandbox, escape.Name(path))
		return rep, nil
	}
	sb, err := e.getSandbox(sandbox)
	if err != nil {
		return nil, err
	}
	if err := e.store.View(func(tx *store.Tx) error {
		st, err := LoadState(ctx, tx, sb)
		rep.InState = st[path]
		return err
	}); err != nil {
		return nil, err
	}
	x := f.entry
	d := rep.Diff
	d.NewSize = x.Size
	if p := rep.InState; p != nil {
		d.OldSize, d.OldDigest = p.Size, p.Digest
	}
	switch {
	case x.Kind == change.KindDelete:
		d.Note = "deleted in that session: no content"
		return rep, nil
	case x.Type == change.TypeDir:
		d.Note = fmt.Sprintf("a directory: %s beneath it (spillway recover ls %s %s)", plural(len(f.beneath), "change"), sandbox, escape.Name(path))
		return rep, nil
	case x.Type != change.TypeFile:
		d.Note = fmt.Sprintf("a %s: its content is never read", x.Type)
		return rep, nil
	case x.Size > MaxDiffSize:
		d.Note = "larger than 1 MiB: export it to look at it (spillway recover export)"
		return rep, nil
	}
	r, err := openEntry(f.rs, x)
	if err != nil {
		return nil, err
	}
	newText, err := io.ReadAll(io.LimitReader(r, MaxDiffSize+1))
	if err == nil {
		err = r.Verify()
	}
	r.Close()
	if err != nil {
		return nil, unsafeEntry(x, err)
	}
	var oldText []byte
	if p := rep.InState; p != nil && p.Type == change.TypeFile && p.Size <= MaxDiffSize {
		if oldText, err = e.recordContent(p); err != nil {
			return nil, err
		}
	}
	if isBinary(oldText) || isBinary(newText) {
		d.Binary, d.Note = true, "binary content: export it to look at it (spillway recover export)"
		return rep, nil
	}
	if rep.InState != nil && rep.InState.Digest != "" && string(oldText) == string(newText) {
		d.Note = "the same as the persisted version"
		return rep, nil
	}
	from := "/dev/null"
	if p := rep.InState; p != nil && p.Kind != change.KindDelete {
		from = versionLabel(p)
	} else if p == nil && x.Kind == change.KindModify {
		d.Note = "the previous version is the image's: the diff shows the whole new file"
	}
	ud := difflib.UnifiedDiff{
		A: splitLines(string(oldText)), B: splitLines(string(newText)),
		FromFile: from, ToFile: fmt.Sprintf("%s (recovery area, session %d)", escape.Name(path), x.Session),
		Context: 3,
	}
	d.Text, err = difflib.GetUnifiedDiffString(ud)
	return rep, err
}
