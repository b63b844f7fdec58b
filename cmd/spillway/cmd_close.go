package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/container"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
)

func closeCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "close",
		Usage:     "persist what the exceptions let through, discard everything else, roll the sandbox back",
		ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "print what close would do and change nothing"},
			&cli.BoolFlag{Name: "force", Usage: "stop processes still running in the sandbox first"},
			&cli.BoolFlag{Name: "abandon", Usage: "end, persisting nothing, a session the ledger shows open on this host whose root this host no longer has (the ledger lost its close: see the error of open or close); needs --reason"},
			&cli.StringFlag{Name: "reason", Usage: "why the session is abandoned (with --abandon; audited)"},
			jsonFlag(t),
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "NAME"); err != nil {
				return err
			}
			if c.Bool("abandon") {
				if c.Bool("dry-run") || c.Bool("force") {
					return usageError("--abandon takes neither --dry-run nor --force")
				}
				return runAbandon(c.Context, c.Args().Get(0), c.String("reason"), globals(c), t)
			}
			if c.IsSet("reason") {
				return usageError("--reason goes with --abandon")
			}
			o := closeOptions{Sandbox: c.Args().Get(0), DryRun: c.Bool("dry-run"), Force: c.Bool("force")}
			return runClose(c.Context, o, globals(c), t)
		},
	}
}

// closeOptions are the options of close.
type closeOptions struct {
	Sandbox string
	DryRun  bool
	Force   bool // stop `spillway run` processes first
}

func runClose(ctx context.Context, o closeOptions, g globalOptions, t *term) error {
	sandbox := o.Sandbox
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		if o.DryRun {
			// The real close applies them first (BeforeUnmount), which a
			// dry run does not: say what it leaves out.
			book := &container.Book{Dir: e.RunDir()}
			if orphans, err := book.Orphans(sandbox); err == nil {
				for _, r := range orphans {
					t.warnf("the VM run of %s by pid %d ended before its changes were applied: they are not in this dry run; the close applies them", sandbox, r.PID)
				}
			}
		}
		sum, err := e.CloseSandbox(ctx, sandbox, persist.CloseOptions{
			DryRun:        o.DryRun,
			BeforeUnmount: beforeUnmount(e, t, o.Force),
		})
		if err != nil {
			return err
		}
		defer sum.Release()
		if !sum.AlreadyClosed {
			warnRefusals(t, sum)
		}
		if t.json {
			return printCloseJSON(t, sum)
		}
		printCloseSummary(t, sum)
		return nil
	})
}

// runAbandon ends this host's session of a sandbox whose root is gone.
func runAbandon(ctx context.Context, sandbox, reason string, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		a, err := e.AbandonSession(ctx, sandbox, reason)
		if a != nil && t.json {
			if perr := t.printJSON(a); perr != nil {
				return perr
			}
		}
		if err != nil {
			return err
		}
		if t.json {
			return nil
		}
		fmt.Fprintf(t.out, "abandoned session %d of %s: nothing persisted, the sandbox is closed at generation %d\n", a.Session, a.Sandbox, a.Generation)
		switch {
		case a.Kept > 0:
			fmt.Fprintf(t.out, "kept %s the lost generation %d had persisted in the recovery area: spillway recover ls %s --session %d\n", count(a.Kept, "file"), a.LostGeneration, a.Sandbox, a.Session)
		case a.LostGeneration != 0:
			t.warnf("kept nothing of the lost generation %d: neither this host's recovery area nor the blob directory still holds the files it persisted (retention or gc removed them; warnings above name each file that could not be kept)", a.LostGeneration)
		}
		return nil
	})
}

// shownRefusals is how many refusals of each exception and reason stderr
// names; the rest are counted, and the manifest lists them all.
const shownRefusals = 5

// warnRefusals summarises the refusals on stderr: the first few of each
// exception and reason, a count of the rest, and where the full list is.
func warnRefusals(t *term, sum *persist.CloseSummary) {
	for _, g := range sum.Refusals {
		for i, r := range g.First {
			if i == shownRefusals {
				break
			}
			t.warnf("refused %s: %s (exception %s)", name(r.Path), r.Reason, r.Exception)
		}
		if more := g.Count - int64(min(len(g.First), shownRefusals)); more > 0 {
			t.warnf("refused %d more: %s (exception %s)", more, g.Reason, g.Exception)
		}
	}
	switch {
	case sum.RefusedCount == 0:
	case sum.ManifestIncomplete:
		t.warnf("the list of refusals is incomplete: the disk is full")
	case sum.Manifest != "":
		t.warnf("every refusal is listed in %s", sum.Manifest)
	}
}

// printCloseJSON prints the summary as JSON with every refusal in
// "refused", streamed from the manifest (never all held in memory).
func printCloseJSON(t *term, sum *persist.CloseSummary) error {
	head := *sum
	head.Refused = []persist.Refusal{}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&head); err != nil {
		return err
	}
	const mark = "\n  \"refused\": []"
	i := bytes.Index(buf.Bytes(), []byte(mark))
	if i < 0 {
		return errors.New("close summary has no refused list")
	}
	w := bufio.NewWriter(t.out)
	w.Write(buf.Bytes()[:i+len(mark)-1])
	var item bytes.Buffer
	ienc := json.NewEncoder(&item)
	ienc.SetIndent("    ", "  ")
	ienc.SetEscapeHTML(false)
	n := 0
	err := sum.EachRefused(func(r persist.Refusal) error {
		item.Reset()
		if err := ienc.Encode(r); err != nil {
			return err
		}
		if n > 0 {
			w.WriteByte(',')
		}
		w.WriteString("\n    ")
		w.Write(bytes.TrimSuffix(item.Bytes(), []byte("\n")))
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if n > 0 {
		w.WriteString("\n  ")
	}
	w.Write(buf.Bytes()[i+len(mark)-1:])
	return w.Flush()
}

func printCloseSummary(t *term, sum *persist.CloseSummary) {
	switch {
	case sum.NeverOpened:
		fmt.Fprintf(t.out, "sandbox %s is closed: it was never opened (open it with: spillway open %s)\n", sum.Sandbox, sum.Sandbox)
		return
	case sum.AlreadyClosed:
		fmt.Fprintf(t.out, "sandbox %s is already closed (session %d, generation %d)\n", sum.Sandbox, sum.Session, sum.Generation)
		return
	case sum.DryRun:
		fmt.Fprintf(t.out, "dry run: close of %s (session %d) would do this; nothing changed\n", sum.Sandbox, sum.Session)
	default:
		fmt.Fprintf(t.out, "closed %s: session %d, generation %d\n", sum.Sandbox, sum.Session, sum.Generation)
	}
	printAttention(t, sum)
	var files, bytes, deletes int64
	for _, x := range sum.Exceptions {
		files += x.Files
		bytes += x.Bytes
		deletes += x.Deletes
	}
	// a deleted document is a record too: said when there is one
	andDeletes := func(n int64) string {
		if n == 0 {
			return ""
		}
		return ", " + count(n, "deletion")
	}
	fmt.Fprintf(t.out, "persisted %s, %s%s\n", count(files, "file"), units.FormatSize(bytes), andDeletes(deletes))
	w := t.table()
	for _, x := range sum.Exceptions {
		fmt.Fprintf(w, "  %s\t%s\t%s%s\n", x.Exception, count(x.Files, "file"), units.FormatSize(x.Bytes), andDeletes(x.Deletes))
	}
	w.Flush()
	if sum.Unchanged > 0 {
		fmt.Fprintf(t.out, "unchanged %s: the same as when the session opened, not recorded\n", count(sum.Unchanged, "file"))
	}
	if sum.ExecDropped > 0 {
		their := "their"
		if sum.ExecDropped == 1 {
			their = "its"
		}
		fmt.Fprintf(t.out, "dropped the execute bits of %s: %s exception lacks --allow-exec\n", count(sum.ExecDropped, "persisted file"), their)
	}
	if sum.RefusedCount > 0 {
		fmt.Fprintf(t.out, "refused %s (listed on stderr)\n", count(sum.RefusedCount, "change"))
		w = t.table()
		for _, g := range sum.Refusals {
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", g.Exception, g.Reason, count(g.Count, "change"), units.FormatSize(g.Bytes))
		}
		w.Flush()
	}
	fmt.Fprintf(t.out, "discarded %s, %s\n", count(sum.Discarded.Count, "change"), units.FormatSize(sum.Discarded.Bytes))
	w = t.table()
	for _, d := range sum.Discarded.Top {
		fmt.Fprintf(w, "  %s\t%s\t%s\n", escape.Name(d.Dir), count(d.Count, "change"), units.FormatSize(d.Bytes))
	}
	w.Flush()
	printRecoverySummary(t, sum)
}

// printAttention lists first the discarded changes that would have been
// malware-like had they persisted: a reason to look at what ran inside.
func printAttention(t *term, sum *persist.CloseSummary) {
	if sum.AttentionCount == 0 {
		return
	}
	fmt.Fprintf(t.out, "discarded, would have persisted malware-like changes: %d\n", sum.AttentionCount)
	w := t.table()
	for _, a := range sum.Attention {
		fmt.Fprintf(w, "  %s %s\t%s\n", persist.KindLetter(a.Kind), name(a.Path), a.What)
	}
	w.Flush()
	if more := sum.AttentionCount - int64(len(sum.Attention)); more > 0 {
		fmt.Fprintf(t.out, "  and %d more (every discarded change is in the manifest)\n", more)
	}
}

func diffCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "diff",
		Usage:     "list the changes since open, each with what close would do (KIND PATH VERDICT)",
		ArgsUsage: "NAME",
		Flags:     []cli.Flag{jsonFlag(t)},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "NAME"); err != nil {
				return err
			}
			return runDiff(c.Context, diffOptions{Sandbox: c.Args().Get(0)}, globals(c), t)
		},
	}
}

// diffOptions are the options of diff.
type diffOptions struct{ Sandbox string }

func runDiff(ctx context.Context, o diffOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		all := []persist.DiffEntry{}
		err := diffSandbox(ctx, e, t, o.Sandbox, func(d persist.DiffEntry) error {
			if t.json {
				all = append(all, d)
				return nil
			}
			verdict := string(d.Verdict)
			switch d.Verdict {
			case change.VerdictPersist:
				verdict += " " + d.Exception
			case change.VerdictRefuse:
				verdict += " " + d.Reason
			}
			_, err := fmt.Fprintf(t.out, "%s %s %s\n", d.Kind, name(d.Path), verdict)
			return err
		})
		if err != nil {
			return err
		}
		if t.json {
			return t.printJSON(all)
		}
		return nil
	})
}
