package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/spillway/spillway/internal/change"
)

// Counters of the current state, kept beside the index and versioned the
// same way, so that `ls` reads them without reading the state:
//
//	cn:SANDBOX\0 ^GEN    varint files ‖ varint bytes, from generation GEN on
//	cq:SANDBOX           varint records pending and not purged
//
// PutCurrent and DeleteCurrentVersion move the files and bytes of GEN by
// what the change does to the state (the path's subtree, seen through
// StateFilter); PutRecord and DeleteRecord move the pending count.
const (
	pCounts  = "cn:"
	pPending = "cq:"
)

// Counts are a state's counters: files (not deletions, not directories)
// and their bytes, as State.Files counts them.
type Counts struct {
	Files, Bytes int64
}

func countsKey(sandbox string, gen uint64) []byte { return key(pCounts, sandbox, ^gen) }

// CountsAt returns the counters a reader at generation gen sees.
func (tx *Tx) CountsAt(sandbox string, gen uint64) (Counts, error) {
	c, _, err := tx.countsAt(sandbox, gen)
	return c, err
}

// countsAt is CountsAt and the generation of the version read (0: none).
func (tx *Tx) countsAt(sandbox string, gen uint64) (Counts, uint64, error) {
	// Usually the counters were written at gen itself: a point read, which
	// costs less than opening an iterator on every table of the store.
	if v, ok, err := tx.get(countsKey(sandbox, gen)); err != nil || ok {
		if err != nil {
			return Counts{}, 0, err
		}
		c, err := decodeCounts(sandbox, v)
		return c, gen, err
	}
	prefix := key(pCounts, sandbox)
	var c Counts
	var at uint64
	err := tx.scan(prefix, true, func(k, v []byte) error {
		g, _ := tailUint64(k)
		if ^g > gen {
			return nil
		}
		at = ^g
		var err error
		if c, err = decodeCounts(sandbox, v); err != nil {
			return err
		}
		return ErrStop
	})
	return c, at, err
}

// CountsOfEach is CountsAt(sb.Name, sb.Generation) for each of sbs, in
// one batched scan (kvTx.scanRanges): on PostgreSQL a round trip per
// 1,000 sandboxes, not one or two per sandbox.
func (tx *Tx) CountsOfEach(ctx context.Context, sbs []*Sandbox) ([]Counts, error) {
	rs := make([]keyRange, len(sbs))
	for i, sb := range sbs {
		// Versions are keyed by ^GEN: from GEN on, the first is the
		// latest at or before GEN.
		rs[i] = keyRange{prefix: key(pCounts, sb.Name), from: countsKey(sb.Name, sb.Generation), limit: 1}
	}
	out := make([]Counts, len(sbs))
	err := tx.scanRanges(ctx, rs, true, func(i int, k, v []byte) error {
		var err error
		out[i], err = decodeCounts(sbs[i].Name, v)
		return err
	})
	return out, err
}

// decodeCounts decodes a version of sandbox's counters.
func decodeCounts(sandbox string, v []byte) (Counts, error) {
	f, n := binary.Varint(v)
	b, m := binary.Varint(v[max(n, 0):])
	if n <= 0 || m <= 0 || n+m != len(v) {
		return Counts{}, fmt.Errorf("store: malformed counters of %s: %x", sandbox, v)
	}
	return Counts{f, b}, nil
}

// addCounts moves the counters of generation gen by d, writing gen's
// version from the one before it when there is none yet, and drops the
// versions no reader needs (those older than what a reader at gen-1 sees).
func (tx *Tx) addCounts(sandbox string, gen uint64, d Counts) error {
	if d == (Counts{}) {
		return nil
	}
	k := string(countsKey(sandbox, gen))
	c, cached := tx.counts[k]
	if !cached {
		var err error
		if c, err = tx.countsForUpdate(sandbox, gen); err != nil {
			return err
		}
		if tx.counts == nil {
			tx.counts = map[string]Counts{}
		}
	}
	c.Files += d.Files
	c.Bytes += d.Bytes
	tx.counts[k] = c
	return tx.set([]byte(k), binary.AppendVarint(binary.AppendVarint(nil, c.Files), c.Bytes))
}

// countsForUpdate returns the counters a reader at gen sees and deletes
// the versions older than what a reader at gen-1 sees, in one scan of the
// sandbox's few versions.
func (tx *Tx) countsForUpdate(sandbox string, gen uint64) (Counts, error) {
	var c Counts
	var stale [][]byte
	seen, keptOlder := false, false
	if err := tx.scan(key(pCounts, sandbox), true, func(k, v []byte) error {
		g, _ := tailUint64(k)
		g = ^g
		if g <= gen && !seen {
			seen = true
			var err error
			if c, err = decodeCounts(sandbox, v); err != nil {
				return err
			}
		}
		switch {
		case g >= gen:
		case !keptOlder:
			keptOlder = true
		default:
			stale = append(stale, append([]byte(nil), k...))
		}
		return nil
	}); err != nil {
		return c, err
	}
	for _, k := range stale {
		if err := tx.del(k); err != nil {
			return c, err
		}
	}
	return c, nil
}

// SetCounts writes the counters of generation gen outright (building them
// for a store written before they were kept).
func (tx *Tx) SetCounts(sandbox string, gen uint64, c Counts) error {
	delete(tx.counts, string(countsKey(sandbox, gen)))
	return tx.set(countsKey(sandbox, gen), binary.AppendVarint(binary.AppendVarint(nil, c.Files), c.Bytes))
}

// noteCurrent records that this transaction changes path's entry at gen;
// settleCounts moves the counters before the commit.
func (tx *Tx) noteCurrent(sandbox, path string, gen uint64) {
	if tx.changed == nil {
		tx.changed = map[countsAt]map[string]bool{}
	}
	k := countsAt{sandbox, gen}
	if tx.changed[k] == nil {
		tx.changed[k] = map[string]bool{}
	}
	tx.changed[k][path] = true
}

// countsAt names the counters of one sandbox at one generation.
type countsAt struct {
	sandbox string
	gen     uint64
}

// settleCounts moves the counters of every generation this transaction
// changed the index at by what the change did to the state: for each
// changed path not under another, what its subtree contributes (given its
// ancestors) in the state committed before and in the one this
// transaction leaves. Reading the index through one iterator per state
// keeps it cheap: a read-write transaction sorts its pending writes for
// every iterator it opens.
func (tx *Tx) settleCounts() error {
	if err := tx.settlePending(); err != nil {
		return err
	}
	if len(tx.changed) == 0 {
		return nil
	}
	err := tx.b.before(func(before kvTx) error {
		return tx.settleChanged(&Tx{b: before, s: tx.s})
	})
	if err != nil {
		return err
	}
	tx.changed, tx.before = nil, nil
	return nil
}

// settleChanged adds to the counters what the paths tx changed add to the
// state, against before, the ledger as tx found it. The entries tx knows
// on both sides are not read, nor the subtrees they hide on both
// (current_counts_known.go); should an ancestor turn out to uncover one,
// its subtree is read after all.
func (tx *Tx) settleChanged(before *Tx) error {
	for k, paths := range tx.changed {
		var tops []string
		for p := range paths {
			top := true
			for a := parentPath(p); a != "" && top; a = parentPath(a) {
				top = !paths[a]
			}
			if top {
				tops = append(tops, p)
			}
		}
		known, err := tx.knownEntries(k, tops)
		if err != nil {
			return err
		}
		old := newSubtreeScan(k, tops, known)
		now := old.again()
		for p, e := range known {
			old.setEntry(p, e.before)
			now.setEntry(p, e.now)
		}
		var hidden []int // the tops whose subtrees are not read
		for t, top := range old.tops {
			if _, ok := known[top]; !ok {
				continue
			}
			ob, err := old.record(before, old.entry[top])
			if err != nil {
				return err
			}
			nb, err := now.record(tx, now.entry[top])
			if err != nil {
				return err
			}
			// (a bare id may name a record of another path, which
			// StateFilter places by its own)
			if blocks(ob) && blocks(nb) && ob.Path == top && nb.Path == top {
				hidden = append(hidden, t)
			}
		}
		old.readRanges(hidden)
		now.rs, now.slot = old.rs, old.slot
		if err := scanBoth(before, tx, old.rs, old.row, now.row); err != nil {
			return err
		}
		var uncovered []int
		for _, t := range hidden {
			oh, err := old.hides(before, t)
			if err != nil {
				return err
			}
			nh, err := now.hides(tx, t)
			if err != nil {
				return err
			}
			if !oh || !nh {
				uncovered = append(uncovered, t)
			}
		}
		if len(uncovered) > 0 {
			old.subtreeRanges(uncovered)
			now.rs, now.slot, now.done, now.last = old.rs, old.slot, nil, -1
			if err := scanBoth(before, tx, old.rs, old.row, now.row); err != nil {
				return err
			}
		}
		oc, err := old.counts(before)
		if err != nil {
			return err
		}
		nc, err := now.counts(tx)
		if err != nil {
			return err
		}
		if err := tx.addCounts(k.sandbox, k.gen, Counts{nc.Files - oc.Files, nc.Bytes - oc.Bytes}); err != nil {
			return err
		}
	}
	return nil
}

// scanBoth reads the ranges rs in before (the ledger as now found it) and
// in now. On PostgreSQL, while now has sent none of its writes (and it
// holds them while before reads through it: pgTx.hold), both see the
// same rows: one query reads them for both (pgTx.scanRangesBoth).
func scanBoth(before, now *Tx, rs []keyRange, fnBefore, fnNow func(i int, k, v []byte) error) error {
	if len(rs) == 0 {
		return nil
	}
	ctx := context.Background()
	if pb, ok := before.b.(*pgTx); ok && pb.root != nil && kvTx(pb.root) == now.b {
		return translate(pb.root.scanRangesBoth(ctx, pb, rs, fnBefore, fnNow))
	}
	if err := before.scanRanges(ctx, rs, true, fnBefore); err != nil {
		return err
	}
	return now.scanRanges(ctx, rs, true, fnNow)
}

// subtreeScan is what settleChanged reads of a state in one batch
// (scanRanges): the entry of every top and of every ancestor of one, and
// the keys under every top, less what it knows. An entry's record is its
// copy in the index (a bare id is looked up): the fields counted never
// change.
type subtreeScan struct {
	k      countsAt
	tops   []string
	known  map[string]knownEntry // entries not read
	prefix []byte
	rs     []keyRange
	slot   []int          // per range: the entry it reads (>= 0), or ^t: the subtree of tops[t]
	paths  []string       // the path of each entry
	entry  map[string]int // the entry of a path
	// per entry: the row read (nil: none), and its record once looked up
	entries []*subtreeValue
	recs    []*Record
	looked  []bool
	under   [][]subtreeValue
	done    []byte // the path key of the subtree's entry seen last
	last    int
}

type subtreeValue struct {
	path string
	v    []byte
}

// newSubtreeScan returns the scan of the entries of tops at k.gen and of
// their ancestors, less the entries known.
func newSubtreeScan(k countsAt, tops []string, known map[string]knownEntry) *subtreeScan {
	s := &subtreeScan{k: k, tops: tops, known: known, prefix: key(pCurrent, k.sandbox), entry: map[string]int{}, last: -1}
	want := func(p string) {
		if _, ok := s.entry[p]; !ok {
			s.entry[p] = len(s.paths)
			s.paths = append(s.paths, p)
		}
	}
	for _, top := range tops {
		for a := parentPath(top); a != ""; a = parentPath(a) {
			want(a)
		}
		want(top)
	}
	s.entries = make([]*subtreeValue, len(s.paths))
	s.recs, s.looked = make([]*Record, len(s.paths)), make([]bool, len(s.paths))
	s.under = make([][]subtreeValue, len(tops))
	return s
}

// readRanges sets the ranges to read: every entry not known, and the
// subtree of every top but those of hidden.
func (s *subtreeScan) readRanges(hidden []int) {
	s.rs, s.slot = nil, nil
	for j, p := range s.paths {
		if _, ok := s.known[p]; !ok {
			s.rs = append(s.rs, keyRange{prefix: currentPathPrefix(s.k.sandbox, p), from: currentKey(s.k.sandbox, p, s.k.gen), limit: 1})
			s.slot = append(s.slot, j)
		}
	}
	skip := map[int]bool{}
	for _, t := range hidden {
		skip[t] = true
	}
	var ts []int
	for t := range s.tops {
		if !skip[t] {
			ts = append(ts, t)
		}
	}
	s.addSubtrees(ts)
}

// subtreeRanges sets the ranges to read: the subtrees of the tops ts.
func (s *subtreeScan) subtreeRanges(ts []int) {
	s.rs, s.slot, s.done, s.last = nil, nil, nil, -1
	s.addSubtrees(ts)
}

func (s *subtreeScan) addSubtrees(ts []int) {
	for _, t := range ts {
		s.rs = append(s.rs, keyRange{prefix: append(s.prefix[:len(s.prefix):len(s.prefix)], s.tops[t]+"/"...)})
		s.slot = append(s.slot, ^t)
	}
}

// again returns a scan of the same ranges with nothing read yet.
func (s *subtreeScan) again() *subtreeScan {
	a := *s
	a.entries = make([]*subtreeValue, len(s.paths))
	a.recs, a.looked = make([]*Record, len(s.paths)), make([]bool, len(s.paths))
	a.under = make([][]subtreeValue, len(s.tops))
	a.done, a.last = nil, -1
	return &a
}

// setEntry gives the entry of path p (v nil: none).
func (s *subtreeScan) setEntry(p string, v []byte) {
	if v != nil {
		s.entries[s.entry[p]] = &subtreeValue{p, v}
	}
}

// row takes a key of range i and its value.
func (s *subtreeScan) row(i int, key, v []byte) error {
	if j := s.slot[i]; j >= 0 {
		s.entries[j] = &subtreeValue{s.paths[j], append([]byte(nil), v...)}
		return nil
	}
	if len(key) < len(s.prefix)+9 {
		return fmt.Errorf("store: malformed current-state key %q", key)
	}
	if i != s.last {
		s.done, s.last = nil, i
	}
	pathKey := key[:len(key)-8]
	if s.done != nil && string(pathKey) == string(s.done) {
		return nil
	}
	if g, _ := tailUint64(key); ^g > s.k.gen {
		return nil
	}
	s.done = append(s.done[:0], pathKey...)
	t := ^s.slot[i]
	s.under[t] = append(s.under[t], subtreeValue{string(pathKey[len(s.prefix) : len(pathKey)-1]), append([]byte(nil), v...)})
	return nil
}

// record returns the record of entry j (nil: none), looked up in tx once.
func (s *subtreeScan) record(tx *Tx, j int) (*Record, error) {
	if !s.looked[j] {
		if e := s.entries[j]; e != nil {
			r, err := tx.entryRecord(s.k.sandbox, e.path, e.v)
			if err != nil {
				return nil, err
			}
			s.recs[j] = r
		}
		s.looked[j] = true
	}
	return s.recs[j], nil
}

// chain returns the records of top t's ancestors, root first.
func (s *subtreeScan) chain(tx *Tx, t int) ([]*Record, error) {
	var out []*Record
	for a := parentPath(s.tops[t]); a != ""; a = parentPath(a) {
		r, err := s.record(tx, s.entry[a])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.Reverse(out)
	return out, nil
}

// hides says whether the state leaves out everything under top t.
func (s *subtreeScan) hides(tx *Tx, t int) (bool, error) {
	anc, err := s.chain(tx, t)
	if err != nil {
		return false, err
	}
	r, err := s.record(tx, s.entry[s.tops[t]])
	return err == nil && hidesSubtree(anc, r, tx), err
}

// counts sums what the rows read contribute, looking records up in tx.
func (s *subtreeScan) counts(tx *Tx) (Counts, error) {
	var c Counts
	for t, top := range s.tops {
		f := StateFilter{Seen: tx}
		anc, err := s.chain(tx, t)
		if err != nil {
			return c, err
		}
		for _, r := range anc {
			if r != nil {
				f.Keep(r)
			}
		}
		r, err := s.record(tx, s.entry[top])
		if err != nil {
			return c, err
		}
		if r != nil && f.Keep(r) {
			c.add(r, 1)
		}
		for _, e := range s.under[t] {
			r, err := tx.entryRecord(s.k.sandbox, e.path, e.v)
			if err != nil {
				return c, err
			}
			if r != nil && f.Keep(r) {
				c.add(r, 1)
			}
		}
	}
	return c, nil
}

// entryRecord returns the record an index value of sandbox's path names:
// its copy, or for a bare id the record itself, nil when it is missing (a
// damaged index, which check reports: it counts nothing).
func (tx *Tx) entryRecord(sandbox, path string, v []byte) (*Record, error) {
	if len(v) > 0 && v[0] == currentCopy {
		return tx.currentRecord(sandbox, path, v)
	}
	id, ok, err := decodeCurrent(v)
	if err != nil || !ok {
		return nil, err
	}
	return tx.indexedRecord(id)
}

// indexedRecord returns the record an index entry names, or nil when it
// is missing (a damaged index, which check reports: it counts nothing).
func (tx *Tx) indexedRecord(id uint64) (*Record, error) {
	r, err := tx.GetRecord(id)
	if isNotFound(err) {
		return nil, nil
	}
	return r, err
}

// add counts r (sign 1) or takes it back (-1) if it is a file or a link.
func (c *Counts) add(r *Record, sign int64) {
	if r.Kind != change.KindDelete && r.Type != change.TypeDir {
		c.Files += sign
		c.Bytes += sign * r.Size
	}
}

func parentPath(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return ""
	}
	return p[:i]
}

// StateFilter applies the rules that make a state out of the newest record
// in effect per path, for records that come in path order (the index's
// order): an entry under a newer record on an ancestor is replaced
// (Replaces), and an entry under a delete, a file or a symlink is left
// out. It keeps the entries that may be ancestors of the records still to
// come: a stack as deep as the tree.
type StateFilter struct {
	// Seen tells Replaces when a session opened and what a path held
	// (a *Tx).
	Seen  Seen
	stack []filterEntry
}

type filterEntry struct {
	path     string
	anc      ancestor // what Replaces reads of the entry's record
	blocks   bool     // a delete, a file or a symlink: nothing lies under it
	replaced bool     // dropped by a newer record on an ancestor
}

// Keep says whether the state keeps r, given the records before it.
func (f *StateFilter) Keep(r *Record) bool {
	// Paths come in byte order, so the subtree of an entry ("e/...") is
	// contiguous and every entry pushed after e leaves the stack before e:
	// drop the entries whose subtree lies wholly before r.Path.
	for len(f.stack) > 0 {
		top := f.stack[len(f.stack)-1].path
		if r.Path < top+"/" || strings.HasPrefix(r.Path, top+"/") {
			break
		}
		f.stack = f.stack[:len(f.stack)-1]
	}
	replaced, orphan := false, false
	for _, a := range f.stack {
		if !strings.HasPrefix(r.Path, a.path+"/") {
			continue
		}
		if replaces(a.anc, r, f.Seen) {
			replaced = true
		}
		if a.blocks && !a.replaced {
			orphan = true
		}
	}
	f.stack = append(f.stack, filterEntry{path: r.Path, blocks: r.Kind == change.KindDelete || r.Type != change.TypeDir, replaced: replaced,
		anc: ancestorOf(r)})
	return !replaced && !orphan
}

// PendingCount returns how many records of sandbox are pending and not
// purged.
func (tx *Tx) PendingCount(sandbox string) (int64, error) {
	v, ok, err := tx.get(key(pPending, sandbox))
	if err != nil || !ok {
		return tx.pending[sandbox], err
	}
	n, k := binary.Varint(v)
	if k <= 0 || k != len(v) {
		return 0, fmt.Errorf("store: malformed pending count of %s: %x", sandbox, v)
	}
	return n + tx.pending[sandbox], nil
}

// SetPendingCount writes sandbox's pending count outright.
func (tx *Tx) SetPendingCount(sandbox string, n int64) error {
	delete(tx.pending, sandbox)
	return tx.set(key(pPending, sandbox), binary.AppendVarint(nil, n))
}

// countsPending says whether r counts as pending.
func countsPending(r *Record) bool { return r != nil && r.Status == change.StatusPending && !r.Purged }

// movePending moves sandbox's pending count for a record going from old
// to new (either nil); settleCounts writes it before the commit.
func (tx *Tx) movePending(old, new *Record) {
	if countsPending(old) {
		tx.notePending(old.Sandbox, -1)
	}
	if countsPending(new) {
		tx.notePending(new.Sandbox, 1)
	}
}

func (tx *Tx) notePending(sandbox string, d int64) {
	if tx.pending == nil {
		tx.pending = map[string]int64{}
	}
	tx.pending[sandbox] += d
}

// settlePending writes the pending counts this transaction moved.
func (tx *Tx) settlePending() error {
	for sb, d := range tx.pending {
		if d == 0 {
			continue
		}
		v, ok, err := tx.get(key(pPending, sb))
		if err != nil {
			return err
		}
		var n int64
		if ok {
			var k int
			if n, k = binary.Varint(v); k <= 0 || k != len(v) {
				return fmt.Errorf("store: malformed pending count of %s: %x", sb, v)
			}
		}
		if err := tx.set(key(pPending, sb), binary.AppendVarint(nil, n+d)); err != nil {
			return err
		}
	}
	tx.pending = nil
	return nil
}
