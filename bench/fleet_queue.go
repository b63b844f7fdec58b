package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// fleetQueue: the review queue's first page on PostgreSQL with many
// sandboxes and pending records. The records are written through the
// store's API into a badger store (the same key and value encoding on
// either driver, and much faster to fill), an Env on it builds the
// current-state index, then everything is copied byte for byte into
// PostgreSQL's kv table with COPY (the badger-only counter keys left out;
// the record sequence set past the last id), and checked by reading them
// back through the store on both drivers. Timed: the call `review ls`
// makes (Env.ReviewEach, stopped after a page) and the CLI process until
// it has printed its first page.
func (b *bench) fleetQueue(ctx context.Context) error {
	sandboxes := fleetSize(b.cfg, 10000, 1000, 100)
	records := fleetSize(b.cfg, 3000000, 100000, 5000)
	reps := fleetSize(b.cfg, 7, 3, 1)
	url, err := b.fleetDB()
	if err != nil {
		return err
	}
	broot := filepath.Join(b.work, "fleet-queue-badger")
	bst, err := store.Open(filepath.Join(broot, "store"))
	if err != nil {
		return err
	}
	d, err := timed(func() error { return fillQueue(bst, sandboxes, records) })
	if err == nil {
		err = bst.Close()
	}
	if err != nil {
		return fmt.Errorf("write the queue: %w", err)
	}
	b.logf("fleet-queue: %d records of %d sandboxes written through the store (badger) in %s", records, sandboxes, fmtDur(d))
	// An Env on the badger root builds the current-state index of every
	// sandbox from its records (persist's own code, once), as closes
	// would have left it; then the whole ledger is copied.
	d, err = timed(func() error {
		e, err := persist.OpenEnv(ctx, persist.Options{Root: broot, Snapshotter: snapshot.KindOverlay, LockTimeout: 10 * time.Second, HostID: "q0"})
		if err != nil {
			return err
		}
		return e.Close()
	})
	if err != nil {
		return err
	}
	b.logf("fleet-queue: current-state index built (badger) in %s", fmtDur(d))
	if bst, err = store.Open(filepath.Join(broot, "store")); err != nil {
		return err
	}
	defer bst.Close()
	pst, err := store.OpenURL(ctx, url, "") // creates the schema
	if err != nil {
		return err
	}
	pst.Close()
	var rows int64
	d, err = timed(func() error {
		var err error
		rows, err = copyToPG(ctx, bst, url)
		return err
	})
	if err != nil {
		return fmt.Errorf("copy into PostgreSQL: %w", err)
	}
	b.logf("fleet-queue: %d keys copied into PostgreSQL in %s", rows, fmtDur(d))
	pst, err = store.OpenURL(ctx, url, "")
	if err != nil {
		return err
	}
	err = sameQueue(ctx, bst, pst, records, sandboxes, b.cfg.Page)
	pst.Close()
	if err != nil {
		return fmt.Errorf("PostgreSQL does not read back what badger holds: %w", err)
	}
	root := filepath.Join(b.work, "fleet-queue-root")
	t0 := time.Now()
	e, err := persist.OpenEnv(ctx, persist.Options{Root: root, Snapshotter: snapshot.KindOverlay, LockTimeout: 10 * time.Second, HostID: "q1", Store: url})
	if err != nil {
		return err
	}
	b.logf("fleet-queue: Env on PostgreSQL opened in %s", fmtDur(time.Since(t0)))
	var api []time.Duration
	for range reps {
		d, err := timed(func() error { return firstPage(e, b.cfg.Page) })
		if err != nil {
			e.Close()
			return err
		}
		api = append(api, d)
	}
	if err := e.Close(); err != nil {
		return err
	}
	grp := fmt.Sprintf("fleet-queue (%d sandboxes, %d pending records, PostgreSQL)", sandboxes, records)
	b.addValue(grp, "kv rows", fmt.Sprint(rows))
	b.add(grp, fmt.Sprintf("review ls first page, store call (Env.ReviewEach, %d rows)", b.cfg.Page), api)
	b.ratios = append(b.ratios, ratio{Name: fmt.Sprintf("fleet review ls first page, %d pending records (store call)", records), Value: float64(median(api)) / 1e6, Target: 50, Unit: " ms"})
	bin, err := buildSpillway(b.work)
	if err != nil {
		b.note("fleet-queue: no CLI figure: " + err.Error())
		return nil
	}
	var cli []time.Duration
	for range reps {
		d, err := cliFirstPage(ctx, bin, root, url, b.cfg.Page)
		if err != nil {
			return err
		}
		cli = append(cli, d)
	}
	b.add(grp, fmt.Sprintf("spillway review ls --limit %d: process start to its rows printed", b.cfg.Page), cli)
	b.ratios = append(b.ratios, ratio{Name: fmt.Sprintf("fleet review ls --limit %d, %d pending records, direct connection (CLI)", b.cfg.Page, records), Value: float64(median(cli)) / 1e6, Target: 50, Unit: " ms"})
	if pooled, err := cliFirstPagesPooled(ctx, bin, root, url, b.cfg.Page, reps); err != nil {
		b.note("fleet-queue: no figure through PgBouncer: " + err.Error())
	} else {
		b.add(grp, fmt.Sprintf("spillway review ls --limit %d through PgBouncer (session pooling, warm)", b.cfg.Page), pooled)
		b.ratios = append(b.ratios, ratio{Name: fmt.Sprintf("fleet review ls --limit %d, %d pending records, through PgBouncer (CLI)", b.cfg.Page, records), Value: float64(median(pooled)) / 1e6, Target: 50, Unit: " ms"})
	}
	first, web, rules, err := serveFirstPages(ctx, bin, root, url, reps)
	if err != nil {
		return err
	}
	b.add(grp, "spillway serve: GET /queue, its first request (a new server connection)", []time.Duration{first})
	b.add(grp, "spillway serve: GET /queue (50 rows; the server connection kept)", web)
	b.add(grp, fmt.Sprintf("spillway serve: GET /exceptions (50 of %d rules, %d records each)", sandboxes, records/sandboxes), rules)
	b.ratios = append(b.ratios, ratio{Name: fmt.Sprintf("fleet review queue first page in the browser, %d pending records (spillway serve)", records), Value: float64(median(web)) / 1e6, Target: 50, Unit: " ms"})
	b.logf("fleet-queue: first page %s (store call), %s (CLI), %s (serve)", fmtDur(median(api)), fmtDur(median(cli)), fmtDur(median(web)))
	return nil
}

// cliFirstPagesPooled is cliFirstPage reps times through a PgBouncer in
// front of url (internal/pgtest), as docs/fleet.md suggests for a fleet,
// after one run that warms its pool.
func cliFirstPagesPooled(ctx context.Context, bin, root, url string, page, reps int) ([]time.Duration, error) {
	pooled, stop, err := pgtest.Bouncer(url)
	if err != nil {
		return nil, err
	}
	defer stop()
	var out []time.Duration
	for i := range reps + 1 {
		d, err := cliFirstPage(ctx, bin, root, pooled, page)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, d)
		}
	}
	return out, nil
}

// serveFirstPages starts `spillway serve` on root, logs in, and times
// GET /queue: its first request, then reps more, 200 ms apart, as a
// reviewer's clicks come; then GET /exceptions reps times. Each page must
// hold its 50 records, or its 50 rules.
func serveFirstPages(ctx context.Context, bin, root, url string, reps int) (first time.Duration, queue, rules []time.Duration, err error) {
	cmd := exec.CommandContext(ctx, bin, "--root", root, "serve", "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "SPILLWAY_STORE="+url, "SPILLWAY_NO_PROGRESS=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, nil, nil, err
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return 0, nil, nil, err
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	var login string
	for login == "" && sc.Scan() {
		login, _ = strings.CutPrefix(sc.Text(), "review at ")
	}
	if login == "" {
		return 0, nil, nil, fmt.Errorf("spillway serve printed no login URL: %s", errb.String())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	jar, err := cookiejar.New(nil)
	if err != nil {
		return 0, nil, nil, err
	}
	c := &http.Client{Jar: jar, Timeout: time.Minute}
	get := func(u string) (string, error) {
		resp, err := c.Get(u)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		return string(body), err
	}
	if _, err := get(login); err != nil {
		return 0, nil, nil, err
	}
	base := login[:strings.Index(login, "/login")]
	for i := range reps + 1 {
		t0 := time.Now()
		body, err := get(base + "/queue")
		d := time.Since(t0)
		if err != nil {
			return 0, nil, nil, err
		}
		if n := strings.Count(body, `<tr class="rec"`); n != 50 {
			return 0, nil, nil, fmt.Errorf("GET /queue shows %d records, want 50", n)
		}
		if i == 0 {
			first = d
		} else {
			queue = append(queue, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for range reps {
		t0 := time.Now()
		body, err := get(base + "/exceptions")
		d := time.Since(t0)
		if err != nil {
			return 0, nil, nil, err
		}
		if n := strings.Count(body, `<tr><td>ex`); n != 50 {
			return 0, nil, nil, fmt.Errorf("GET /exceptions shows %d rules, want 50", n)
		}
		rules = append(rules, d)
		time.Sleep(200 * time.Millisecond)
	}
	return first, queue, rules, nil
}

// fillQueue writes sandboxes and records pending records spread over them
// as closes of 50 files would leave them: record j is in sandbox
// (j/50) mod sandboxes.
func fillQueue(st *store.Store, sandboxes, records int) error {
	now := time.Now().UTC()
	sessions := uint64((records/sandboxes + 49) / 50)
	const batch = 2000
	for i := 0; i < sandboxes; i += batch {
		if err := st.Update(func(tx *store.Tx) error {
			for j := i; j < min(sandboxes, i+batch); j++ {
				if err := tx.PutSandbox(&store.Sandbox{Name: fmt.Sprintf("q%05d", j), Image: "img", Created: now, State: store.StateClosed,
					Session: sessions, Generation: sessions}); err != nil {
					return err
				}
				// the rule its records name
				if err := tx.PutException(&exceptions.Exception{ID: fmt.Sprintf("ex%d", j+1), Sandbox: fmt.Sprintf("q%05d", j),
					Patterns: []string{"/home/user/Documents/**"}, Reason: "documents", Created: now.Add(-time.Hour), Review: change.ReviewAfter}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	for i := 0; i < records; i += batch {
		if err := st.Update(func(tx *store.Tx) error {
			for j := i; j < min(records, i+batch); j++ {
				id, err := tx.NextRecordID()
				if err != nil {
					return err
				}
				sb := (j / 50) % sandboxes
				r := &store.Record{
					ID: id, Sandbox: fmt.Sprintf("q%05d", sb), Session: uint64(j/(50*sandboxes) + 1),
					Path: fmt.Sprintf("/home/user/Documents/s%d/doc%02d.odt", j/(50*sandboxes), j%50),
					Kind: change.KindAdd, Type: "file", Size: int64(4096 + j%100000), Mode: 0o644, UID: 1000, GID: 1000,
					Mtime: now, Digest: fmt.Sprintf("sha256:%064x", j), Exception: fmt.Sprintf("ex%d", sb+1), Review: "after",
					Status: change.StatusPending, Created: now,
				}
				if err := tx.PutRecord(r); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// copyToPG copies every key of the badger store that PostgreSQL's store
// does not hold already into kv with COPY, leaving out badger's counter
// keys (c:NAME: sequences on PostgreSQL), and sets the record sequence
// past the last record id. It returns the rows copied.
func copyToPG(ctx context.Context, bst *store.Store, url string) (int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	have := map[string]bool{}
	rs, err := conn.Query(ctx, `SELECT k FROM kv`)
	if err != nil {
		return 0, err
	}
	for rs.Next() {
		var k []byte
		if err := rs.Scan(&k); err != nil {
			return 0, err
		}
		have[string(k)] = true
	}
	if err := rs.Err(); err != nil {
		return 0, err
	}
	var maxID uint64
	if err := bst.View(func(tx *store.Tx) error {
		return tx.ForEachPending(ctx, "", func(r *store.Record) error { maxID = max(maxID, r.ID); return nil })
	}); err != nil {
		return 0, err
	}
	var n int64
	err = bst.RawDB().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		it.Rewind()
		src := &badgerRows{it: it, skip: func(k []byte) bool { return strings.HasPrefix(string(k), "c:") || have[string(k)] }}
		var err error
		n, err = conn.CopyFrom(ctx, pgx.Identifier{"kv"}, []string{"k", "v"}, src)
		return err
	})
	if err != nil {
		return n, err
	}
	_, err = conn.Exec(ctx, `SELECT setval('spillway_ctr_record', $1)`, int64(maxID))
	if err == nil {
		_, err = conn.Exec(ctx, `ANALYZE kv`)
	}
	return n, err
}

// badgerRows feeds COPY from a badger iterator.
type badgerRows struct {
	it    *badger.Iterator
	skip  func(k []byte) bool
	k, v  []byte
	err   error
	begun bool
}

func (r *badgerRows) Next() bool {
	for {
		if r.begun {
			r.it.Next()
		}
		r.begun = true
		if !r.it.Valid() {
			return false
		}
		item := r.it.Item()
		if r.skip(item.Key()) {
			continue
		}
		r.k = item.KeyCopy(nil)
		v, err := item.ValueCopy(nil)
		if err != nil {
			r.err = err
			return false
		}
		if v == nil {
			v = []byte{} // kv.v is NOT NULL: an index key's empty value
		}
		r.v = v
		return true
	}
}

func (r *badgerRows) Values() ([]any, error) { return []any{r.k, r.v}, nil }
func (r *badgerRows) Err() error             { return r.err }

// sameQueue reads back through the store on both drivers: the first pages
// of the queue, random records, and each sandbox's pending count of a
// sample, must be equal.
func sameQueue(ctx context.Context, bst, pst *store.Store, records, sandboxes, page int) error {
	read := func(st *store.Store) ([]*store.Record, []*store.Record, []int64, error) {
		var first, picked []*store.Record
		var counts []int64
		r := rand.New(rand.NewPCG(7, 7))
		err := st.View(func(tx *store.Tx) error {
			first, picked, counts = nil, nil, nil
			if err := tx.ForEachPending(ctx, "", func(rec *store.Record) error {
				first = append(first, rec)
				if len(first) == page {
					return store.ErrStop
				}
				return nil
			}); err != nil && !errors.Is(err, store.ErrStop) {
				return err
			}
			for range 100 {
				rec, err := tx.GetRecord(uint64(1 + r.IntN(records)))
				if err != nil {
					return err
				}
				picked = append(picked, rec)
			}
			for range 20 {
				n, err := tx.PendingCount(fmt.Sprintf("q%05d", r.IntN(sandboxes)))
				if err != nil {
					return err
				}
				counts = append(counts, n)
			}
			return nil
		})
		return first, picked, counts, err
	}
	bf, bp, bc, err := read(bst)
	if err != nil {
		return err
	}
	pf, pp, pc, err := read(pst)
	if err != nil {
		return err
	}
	if len(bf) != page || !reflect.DeepEqual(bf, pf) || !reflect.DeepEqual(bp, pp) || !reflect.DeepEqual(bc, pc) {
		return fmt.Errorf("first page %d/%d records, sampled records equal %v, pending counts %v / %v",
			len(bf), len(pf), reflect.DeepEqual(bp, pp), bc, pc)
	}
	return nil
}

// buildSpillway builds the spillway command into dir (go on PATH, run from
// the module's directory, as `go run ./bench` is).
func buildSpillway(dir string) (string, error) {
	bin := filepath.Join(dir, "spillway")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/spillway/spillway/cmd/spillway").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build github.com/spillway/spillway/cmd/spillway: %v: %s", err, out)
	}
	return bin, nil
}

// cliFirstPage runs `spillway review ls --limit PAGE` and returns the time
// until it has printed its header and page rows. The process then ends by
// itself: through a pooler (PgBouncer) its server connection goes back to
// the pool, where a process killed in the middle of a query loses it.
func cliFirstPage(ctx context.Context, bin, root, url string, page int) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin, "--root", root, "review", "ls", "--limit", fmt.Sprint(page))
	cmd.Env = append(os.Environ(), "SPILLWAY_STORE="+url, "SPILLWAY_NO_PROGRESS=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(out)
	lines := 0
	for lines < page+1 && sc.Scan() {
		lines++
	}
	d := time.Since(t0)
	for sc.Scan() {
		lines++
	}
	if err := cmd.Wait(); err != nil || lines != page+1 {
		return 0, fmt.Errorf("spillway review ls --limit %d printed %d lines (%v): %s", page, lines, err, errb.String())
	}
	return d, nil
}
