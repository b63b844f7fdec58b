package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/view"
)

func reviewCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:  "review",
		Usage: "list, show, approve and reject persisted changes",
		Subcommands: []*cli.Command{
			{
				Name:      "ls",
				Usage:     "list the records that wait for review",
				ArgsUsage: "[SANDBOX]",
				Flags: []cli.Flag{jsonFlag(t), hostFilterFlag("the records of its closes"), sandboxFilterFlag(),
					&cli.IntFlag{Name: "limit", Usage: "list at most `N` records", DefaultText: "all"},
					&cli.StringFlag{Name: "after", Usage: "list only the records after record `ID` (r12 or 12), by ascending id: the next page after --limit's last row"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 1 {
						return usageError("usage: spillway review ls [SANDBOX] [--host HOST] [--sandbox NAME] [--limit N] [--after ID]")
					}
					sb, err := sandboxFilter(c)
					if err != nil {
						return err
					}
					o := reviewOptions{Sandbox: sb, Host: c.String("host"), Limit: c.Int("limit")}
					if o.Limit < 0 {
						return usageError("bad --limit %d: give a number of records (0, the default: all of them)", o.Limit)
					}
					if a := c.String("after"); a != "" && a != "0" { // 0: from the first, for a script's loop
						ids, err := parseRecordIDs([]string{a})
						if err != nil {
							return err
						}
						o.After = ids[0]
					}
					return runReviewLs(c.Context, o, globals(c), t)
				},
			},
			{
				Name:      "show",
				Usage:     "show a record, its exception and a diff against the previous version",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{jsonFlag(t)},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, "ID"); err != nil {
						return err
					}
					ids, err := parseRecordIDs(c.Args().Slice())
					if err != nil {
						return err
					}
					return runReviewShow(c.Context, reviewOptions{IDs: ids}, globals(c), t)
				},
			},
			{
				Name:      "approve",
				Usage:     "approve pending records (a --review before change enters the persisted state)",
				ArgsUsage: "ID... | --all SANDBOX",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "all", Usage: "approve every pending record of SANDBOX"},
					&cli.StringFlag{Name: "note", Usage: "a note kept with the decision"},
					jsonFlag(t),
				},
				Action: func(c *cli.Context) error {
					o, err := reviewApproveFlags(c)
					if err != nil {
						return err
					}
					return runReviewApprove(c.Context, o, globals(c), t)
				},
			},
			{
				Name:      "reject",
				Usage:     "reject pending records: the previous version returns, or the path goes",
				ArgsUsage: "ID... --reason TEXT",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "reason", Usage: "why the change is rejected (required)"}, jsonFlag(t)},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return usageError("usage: spillway review reject ID... --reason TEXT")
					}
					ids, err := parseRecordIDs(c.Args().Slice())
					if err != nil {
						return err
					}
					if strings.TrimSpace(c.String("reason")) == "" {
						return usageError("--reason is required: say why the change is rejected")
					}
					return runReviewReject(c.Context, reviewOptions{IDs: ids, Text: c.String("reason")}, globals(c), t)
				},
			},
		},
	}
}

// parseRecordIDs accepts record ids as "r12" or "12".
func parseRecordIDs(args []string) ([]uint64, error) {
	var ids []uint64
	for _, a := range args {
		n, err := strconv.ParseUint(strings.TrimPrefix(a, "r"), 10, 64)
		if err != nil || n == 0 {
			return nil, usageError("bad record id %q: use the r12 or 12 form (see spillway review ls)", a)
		}
		ids = append(ids, n)
	}
	return ids, nil
}

// reviewOptions are the options of the review commands.
type reviewOptions struct {
	Sandbox string   // ls, approve --all
	Host    string   // ls: only records written by this host's closes
	All     bool     // approve every pending record of Sandbox
	IDs     []uint64 // show (one), approve, reject
	Text    string   // approve: the note; reject: the reason
	Limit   int      // ls: at most this many records (0: all)
	After   uint64   // ls: only records with a higher id
}

func runReviewLs(ctx context.Context, o reviewOptions, g globalOptions, t *term) error {
	return withLedger(ctx, g, t, func(e *persist.Env) error {
		if err := e.CheckScope(ctx, o.Host, ""); err != nil {
			return err
		}
		// Rows print as they are read, so the first page of a long list
		// shows at once (pagedOutput).
		out := t.paged()
		defer out.done()
		if t.json {
			// Each row names the host that wrote it (its session's).
			arr := out.term.jsonArray()
			n := 0
			if err := e.ReviewEachHost(ctx, o.Sandbox, o.After, func(r *persist.Record, host string) error {
				if o.Host != "" && host != o.Host {
					return nil
				}
				v := view.NewRecord(r)
				v.Host = host
				if err := arr.add(v); err != nil {
					return err
				}
				n++
				return limitReached(out.row(), n, o.Limit)
			}); err != nil {
				return err
			}
			if err := arr.close(); err != nil {
				return err
			}
			return out.done()
		}
		each := reviewEachOn(e, o.Host)
		w := out.table
		n := 0
		var last uint64
		more := false
		err := each(ctx, o.Sandbox, o.After, func(r *persist.Record) error {
			if o.Limit > 0 && n == o.Limit {
				more = true // a row past the page: say how to get the next one
				return persist.ErrStop
			}
			if n == 0 {
				fmt.Fprintln(w, "RECORD\tSANDBOX\tSESSION\tKIND\tTYPE\tSIZE\tEXCEPTION\tREVIEW\tPATH")
			}
			n++
			last = r.ID
			fmt.Fprintf(w, "r%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Sandbox, r.Session, r.Kind, r.Type,
				units.FormatSize(r.Size), r.Exception, r.Review, name(r.Path))
			return out.row()
		})
		if err != nil {
			return err
		}
		if n == 0 {
			fmt.Fprintln(out.buf, "nothing to review")
		}
		if err := out.done(); err != nil {
			return err
		}
		if more {
			fmt.Fprintf(t.err, "more records wait: the next page is --after r%d\n", last)
		}
		return nil
	})
}

// limitReached ends a listing (persist.ErrStop) once n rows of limit (0:
// no limit) are out, unless err already ends it.
func limitReached(err error, n, limit int) error {
	if err == nil && limit > 0 && n >= limit {
		return persist.ErrStop
	}
	return err
}

// reviewApproveFlags parses the arguments and flags of review approve.
func reviewApproveFlags(c *cli.Context) (reviewOptions, error) {
	o := reviewOptions{Text: c.String("note"), All: c.Bool("all")}
	if o.All {
		if c.NArg() != 1 {
			return o, usageError("usage: spillway review approve --all SANDBOX [--note TEXT]")
		}
		o.Sandbox = c.Args().First()
		return o, nil
	}
	if c.NArg() == 0 {
		return o, usageError("usage: spillway review approve ID... | --all SANDBOX [--note TEXT]")
	}
	var err error
	o.IDs, err = parseRecordIDs(c.Args().Slice())
	return o, err
}

func runReviewApprove(ctx context.Context, o reviewOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		if o.All {
			d, err := e.ApproveAll(ctx, o.Sandbox, o.Text)
			if err == nil && len(d.Records) == 0 && !t.json {
				fmt.Fprintf(t.out, "nothing to review in %s\n", o.Sandbox)
				return nil
			}
			return printDecided(t, "approved", d, true, nil, err) // all of them: nothing pending is split
		}
		d, err := e.Approve(ctx, o.IDs, o.Text)
		return printDecided(t, "approved", d, false, splitDecisions(ctx, e, t, d, change.StatusApproved), err)
	})
}

func runReviewReject(ctx context.Context, o reviewOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		d, err := e.Reject(ctx, o.IDs, o.Text)
		return printDecided(t, "rejected", d, false, splitDecisions(ctx, e, t, d, change.StatusRejected), err)
	})
}

// splitDecisions returns the databases and repositories a decision split
// (persist.SplitDecisions); failing to find them is a warning, not the
// decision's failure.
func splitDecisions(ctx context.Context, e *persist.Env, t *term, d *persist.Decided, status change.Status) []persist.SplitDecision {
	splits, err := e.SplitDecisions(ctx, d, status)
	if err != nil {
		t.warnf("could not look for databases or repositories decided in part: %v", err)
	}
	return splits
}

// splitJSON is one database or repository a decision split.
type splitJSON struct {
	Record     uint64   `json:"record"`
	Path       string   `json:"path"`
	What       string   `json:"what"`  // "sqlite database" or "git repository"
	Whole      string   `json:"whole"` // the database's file or the .git directory
	Companions []uint64 `json:"companions"`
}

// decidedJSON is approve and reject --json: every decided record id and
// the effect on each sandbox.
type decidedJSON struct {
	Records   []uint64             `json:"records"`
	Sandboxes []decidedSandboxJSON `json:"sandboxes"`
	Already   []uint64             `json:"already,omitempty"` // given, decided the same way before: skipped
	// Split lists the sqlite databases and git repositories the decision
	// split: companions of the same session decided otherwise or not yet.
	Split []splitJSON `json:"split,omitempty"`
}

type decidedSandboxJSON struct {
	Name           string   `json:"name"`
	Records        []uint64 `json:"records"`
	Generation     uint64   `json:"generation"`
	Changed        bool     `json:"changed"`
	Open           bool     `json:"open"`
	OpenGeneration uint64   `json:"open_generation,omitempty"`
}

// shownIDs is how many record ids a line names before it counts the rest.
const shownIDs = 10

// idList names ids as "r1 r2 r3", or, past shownIDs, the first three and a
// count of the rest.
func idList(ids []uint64) string {
	n := len(ids)
	if n > shownIDs {
		ids = ids[:3]
	}
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = "r" + strconv.FormatUint(id, 10)
	}
	s := strings.Join(names, " ")
	if n > len(ids) {
		s += fmt.Sprintf(" and %d more", n-len(ids))
	}
	return s
}

// printDecided says what a decision did, also what the batches before a
// failure did: the record ids (counted for --all, or past shownIDs), and
// every id with --json.
func printDecided(t *term, verb string, d *persist.Decided, all bool, splits []persist.SplitDecision, err error) error {
	if d == nil || err != nil && len(d.Records) == 0 {
		return err // nothing decided: stdout holds nothing, as for any error
	}
	if t.json {
		out := decidedJSON{Records: []uint64{}, Sandboxes: []decidedSandboxJSON{}, Already: d.Already}
		for _, r := range d.Records {
			out.Records = append(out.Records, r.ID)
		}
		for _, s := range d.Sandboxes {
			j := decidedSandboxJSON{Name: s.Name, Records: s.Records, Generation: s.Generation, Changed: s.Changed, Open: s.Open}
			if s.Open {
				j.OpenGeneration = s.OpenGeneration
			}
			out.Sandboxes = append(out.Sandboxes, j)
		}
		for _, p := range splits {
			out.Split = append(out.Split, splitJSON{Record: p.Record.ID, Path: p.Record.Path, What: p.What, Whole: p.Whole, Companions: p.Companions})
		}
		if perr := t.printJSON(out); err == nil {
			err = perr
		}
		return err
	}
	if len(d.Already) > 0 {
		// A rerun of a decision interrupted between its batches.
		fmt.Fprintf(t.out, "%s already %s before: skipped\n", idList(d.Already), verb)
	}
	for _, s := range d.Sandboxes {
		if all {
			fmt.Fprintf(t.out, "%s %s of %s\n", verb, count(len(s.Records), "record"), s.Name)
		} else {
			fmt.Fprintf(t.out, "%s %s\n", verb, idList(s.Records))
		}
		switch {
		case !s.Changed:
			fmt.Fprintf(t.out, "%s: generation %d (unchanged: the persisted state is the same)\n", s.Name, s.Generation)
		case s.Open:
			fmt.Fprintf(t.out, "%s: generation %d; the open root stays on generation %d until close, the new one applies at the next open\n", s.Name, s.Generation, s.OpenGeneration)
		default:
			fmt.Fprintf(t.out, "%s: generation %d (applies at the next open)\n", s.Name, s.Generation)
		}
	}
	for _, p := range splits {
		how := "spillway review approve " + allIDs(p.Companions)
		if verb == "rejected" {
			how = "spillway review reject " + allIDs(p.Companions) + " --reason TEXT"
		}
		if len(p.Companions) > shownIDs {
			how = "review ls " + p.Record.Sandbox + " lists them"
		}
		if p.What == "directory" {
			stays := "stay as they were, and so does the directory while any of them is in effect"
			if verb != "rejected" {
				stays = "are still held back for review: the directory comes without them"
			}
			t.warnf("%s %s is a directory whose records beneath it of session %d (%s) %s; decide them the same way (%s)",
				idList([]uint64{p.Record.ID}), name(p.Record.Path), p.Record.Session, idList(p.Companions), stays, how)
			continue
		}
		t.warnf("%s %s is part of the %s %s, whose other records of session %d (%s) stay as they were: a %s decided in part can be left inconsistent; decide them the same way (%s)",
			idList([]uint64{p.Record.ID}), name(p.Record.Path), p.What, name(p.Whole), p.Record.Session, idList(p.Companions), p.What, how)
	}
	return err
}

// allIDs names every id, "r1 r2 r3", for a command line to copy.
func allIDs(ids []uint64) string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = "r" + strconv.FormatUint(id, 10)
	}
	return strings.Join(names, " ")
}

// recordStatus says where a record stands, for people.
func recordStatus(r *persist.Record) string {
	var s string
	switch r.Status {
	case change.StatusPending:
		switch {
		case r.Purged:
			s = "pending" // what follows says it is out of the state
		case r.Review == change.ReviewBefore:
			s = "pending (review before: held back until approved)"
		default:
			s = "pending (review after: in the persisted state until rejected)"
		}
	case change.StatusApproved:
		s = fmt.Sprintf("approved by %s on %s", name(r.DecidedBy), r.DecidedAt.Format("2006-01-02 15:04"))
		if r.Note != "" {
			s += ": " + name(r.Note)
		}
	case change.StatusRejected:
		s = fmt.Sprintf("rejected by %s on %s: %s", name(r.DecidedBy), r.DecidedAt.Format("2006-01-02 15:04"), name(r.Reason))
	case change.StatusRefused:
		s = "refused (" + name(r.Reason) + ")"
	default:
		s = name(string(r.Status))
	}
	if r.Purged {
		s += ", purged with its exception " + r.Exception + ": not in the persisted state"
	}
	if r.Pruned {
		s += "; its content was pruned (persisted prune): no diff, no content"
	}
	return s
}
