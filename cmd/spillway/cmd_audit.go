package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/persist"
)

type eventJSON struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Sandbox string    `json:"sandbox,omitempty"`
	User    string    `json:"user"`
	// Host is the host that wrote the entry, when the entry tells
	// (persist.HostOf.Event).
	Host string            `json:"host,omitempty"`
	Data map[string]string `json:"data"`
	Hash string            `json:"hash"`
}

func logCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "log",
		Usage:     "show the audit log, oldest first",
		ArgsUsage: "[SANDBOX]",
		Flags: []cli.Flag{jsonFlag(t), hostFilterFlag("the entries of its sessions, opens and closes, and the fleet entries about it (evicted, forgotten, rejoined)"), sandboxFilterFlag(),
			&cli.IntFlag{Name: "limit", Usage: "show at most `N` entries", DefaultText: "all"},
			&cli.Uint64Flag{Name: "after", Usage: "show only the entries numbered above `SEQ`: the next page after --limit's last entry"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usageError("usage: spillway log [SANDBOX] [--host HOST] [--sandbox NAME] [--limit N] [--after SEQ]")
			}
			sb, err := sandboxFilter(c)
			if err != nil {
				return err
			}
			o := logOptions{Sandbox: sb, Host: c.String("host"), Limit: c.Int("limit"), After: c.Uint64("after")}
			if o.Limit < 0 {
				return usageError("bad --limit %d: give a number of entries (0, the default: all of them)", o.Limit)
			}
			return runLog(c.Context, o, globals(c), t)
		},
	}
}

// logOptions are the options of log.
type logOptions struct {
	Sandbox string // "" for every sandbox
	Host    string // "" for every host, else the entries written on it or about it (persist.HostOf.EventMatches)
	Limit   int    // at most this many entries (0: all)
	After   uint64 // only entries numbered above this
}

func runLog(ctx context.Context, o logOptions, g globalOptions, t *term) error {
	return withLedger(ctx, g, t, func(e *persist.Env) error {
		if err := e.CheckLogScope(ctx, o.Host, o.Sandbox); err != nil {
			return err
		}
		// Entries print as they are read, the first page at once, the
		// rest in 64 KiB writes (pagedOutput); JSON as one array.
		out := t.paged()
		defer out.done()
		var arr *jsonArrayWriter
		if t.json {
			arr = out.term.jsonArray()
		}
		hosts := e.HostOf()
		n := 0
		var last uint64
		more := false
		err := e.ForEachEventAfter(ctx, o.Sandbox, o.After, func(ev *persist.Event) error {
			var host string
			if o.Host != "" || t.json {
				h, err := hosts.Event(ev)
				if err != nil {
					return err
				}
				if o.Host != "" {
					// what the host wrote, and the fleet's entries about it
					if ok, err := hosts.EventMatches(ev, o.Host); err != nil || !ok {
						return err
					}
				}
				host = h
			}
			if o.Limit > 0 && n == o.Limit && !t.json {
				more = true // an entry past the page: say how to get the next one
				return persist.ErrStop
			}
			var err error
			if t.json {
				err = arr.add(eventJSON{ev.Seq, ev.Time, ev.Type, ev.Sandbox, ev.User, host, ev.Data, fmt.Sprintf("%x", ev.Hash)})
			} else {
				_, err = fmt.Fprintf(out.buf, "%d  %s  %s  %s%s\n", ev.Seq, ev.Time.Format(time.RFC3339), name(ev.User), ev.Type, formatData(ev))
			}
			if err == nil {
				err = out.row()
			}
			n++
			last = ev.Seq
			if t.json {
				return limitReached(err, n, o.Limit)
			}
			return err
		})
		if err != nil {
			return err
		}
		if t.json {
			if err := arr.close(); err != nil {
				return err
			}
		}
		if err := out.done(); err != nil {
			return err
		}
		if more {
			fmt.Fprintf(t.err, "more entries wait: the next page is --after %d\n", last)
		}
		return nil
	})
}

func formatData(ev *persist.Event) string {
	var b strings.Builder
	b.WriteString(" ")
	if ev.Sandbox != "" {
		fmt.Fprintf(&b, " sandbox=%s", name(ev.Sandbox))
	}
	keys := make([]string, 0, len(ev.Data))
	for k := range ev.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := ev.Data[k]
		if listKeys[k] {
			v = shortList(v)
		}
		fmt.Fprintf(&b, " %s=%s", name(k), name(v))
	}
	return b.String()
}

func auditCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "verify the audit log",
		Subcommands: []*cli.Command{{
			Name:      "verify",
			Usage:     "recompute the hash chain: exit 0 when intact, 3 naming the first bad entry",
			ArgsUsage: " ",
			Flags:     []cli.Flag{jsonFlag(t)},
			Action: func(c *cli.Context) error {
				if c.NArg() != 0 {
					return usageError("usage: spillway audit verify [--json]")
				}
				return runAuditVerify(c.Context, globals(c), t)
			},
		}},
	}
}

func checkCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:   "check",
		Usage:  "check that store, blobs, snapshots and mounts agree (exit 3 listing each problem)",
		Action: func(c *cli.Context) error { return runCheck(c.Context, globals(c), t) },
	}
}

// verifyJSON is `audit verify --json`: intact, or the first bad entry.
type verifyJSON struct {
	Intact  bool   `json:"intact"`
	Seq     uint64 `json:"seq,omitempty"`     // the first bad entry (0: none, or no single entry is to blame)
	Problem string `json:"problem,omitempty"` // what is wrong with it
}

func runAuditVerify(ctx context.Context, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		prob, err := e.VerifyAudit(ctx)
		if err != nil {
			return err
		}
		if t.json {
			v := verifyJSON{Intact: prob == nil}
			if prob != nil {
				v.Seq, v.Problem = prob.Seq, prob.Message
			}
			if err := t.printJSON(v); err != nil {
				return err
			}
		}
		if prob != nil {
			return &exitStatus{code: exitVerifyKO, err: fmt.Errorf("audit log broken: %s", prob.Message)}
		}
		if !t.json {
			fmt.Fprintln(t.out, "audit log intact")
		}
		return nil
	})
}

func runCheck(ctx context.Context, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		problems, err := e.Check(ctx)
		if err != nil {
			return err
		}
		for _, p := range problems {
			fmt.Fprintf(t.out, "problem: %s\n", name(p))
		}
		if len(problems) > 0 {
			return &exitStatus{code: exitVerifyKO, err: fmt.Errorf("check found %s", count(len(problems), "problem"))}
		}
		fmt.Fprintln(t.out, "no problems found")
		return nil
	})
}

// listKeys are the event fields that hold a space-separated list (of
// record ids): a log line names the first few and counts the rest, and
// log --json has them all.
var listKeys = map[string]bool{"records": true}

// shortList shortens a space-separated list past shownIDs items to the
// first three and a count of the rest.
func shortList(v string) string {
	items := strings.Fields(v)
	if len(items) <= shownIDs {
		return v
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:3], " "), len(items)-3)
}
