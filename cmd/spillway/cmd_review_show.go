package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/view"
)

func runReviewShow(ctx context.Context, o reviewOptions, g globalOptions, t *term) error {
	return withLedger(ctx, g, t, func(e *persist.Env) error {
		rep, err := e.ReviewShow(o.IDs[0])
		if err != nil {
			return err
		}
		if t.json {
			return t.printJSON(view.NewReviewShow(rep, e.Now()))
		}
		printReview(t, rep)
		return nil
	})
}

// printReview prints a review report for people. Everything that came from
// the sandbox is escaped, the diff line by line.
func printReview(t *term, rep *persist.ReviewReport) {
	r := rep.Record
	w := t.table()
	fmt.Fprintf(w, "record\tr%d\n", r.ID)
	fmt.Fprintf(w, "sandbox\t%s (session %d)\n", r.Sandbox, r.Session)
	fmt.Fprintf(w, "path\t%s\n", name(r.Path))
	what := fmt.Sprintf("%s %s", r.Kind, r.Type)
	if r.Kind != change.KindDelete {
		what += fmt.Sprintf(", %s, mode %04o, owner %d:%d", units.FormatSize(r.Size), r.Mode, r.UID, r.GID)
	}
	if r.MetaOnly {
		what += " (its mode or owner changed; it keeps what it holds)"
	}
	if r.Link != "" {
		what += ", link to " + name(r.Link)
	}
	fmt.Fprintf(w, "change\t%s\n", what)
	if r.Digest != "" {
		fmt.Fprintf(w, "digest\t%s\n", r.Digest)
	}
	fmt.Fprintf(w, "status\t%s\n", recordStatus(r))
	if x := rep.Exception; x != nil {
		fmt.Fprintf(w, "exception\t%s (review %s): %s\n", x.ID, x.Review, joinNames(x.Patterns))
		fmt.Fprintf(w, "reason\t%s\n", name(x.Reason))
	} else if r.Exception == persist.RecoverID {
		fmt.Fprintf(w, "exception\t%s (put back by spillway recover restore: its reason is in spillway log %s)\n", r.Exception, r.Sandbox)
	} else {
		fmt.Fprintf(w, "exception\t%s (no longer stored)\n", r.Exception)
	}
	if p := rep.Previous; p != nil {
		fmt.Fprintf(w, "previous\tr%d (session %d, %s, %s, %s, mode %04o, owner %d:%d, %s)\n", p.ID, p.Session, p.Kind, p.Status, units.FormatSize(p.Size), p.Mode, p.UID, p.GID, orNone(p.Digest))
	} else {
		fmt.Fprintf(w, "previous\tnone recorded\n")
	}
	w.Flush()
	d := rep.Diff
	if d.Note != "" {
		fmt.Fprintf(t.out, "\n%s\n", name(d.Note))
	}
	if d.Text == "" {
		if d.Note != "" && (d.OldDigest != "" || d.NewDigest != "") {
			fmt.Fprintf(t.out, "old: %s, %s\nnew: %s, %s\n", units.FormatSize(d.OldSize), orNone(d.OldDigest), units.FormatSize(d.NewSize), orNone(d.NewDigest))
		}
		return
	}
	printDiffText(t, d.Text)
}

// printDiffText prints a unified diff after a blank line, every line that
// came from the sandbox escaped (the two header lines hold names escaped
// already).
func printDiffText(t *term, text string) {
	fmt.Fprintln(t.out)
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if i >= 2 && line != persist.NoNewline {
			line = name(line)
		}
		fmt.Fprintln(t.out, line)
	}
}

func orNone(s string) string {
	if s == "" {
		return "no content"
	}
	return s
}
