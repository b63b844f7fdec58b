package store

import (
	"context"
	"encoding/binary"

	"fmt"
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
	tx.changed = nil
	return nil
}

// settleChanged adds to the counters what the paths tx changed add to the
// state, against before, the ledger as tx found it.
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
		old := newSubtreeScan(k, tops)
		now := old.again()
		if err := scanBoth(before, tx, old.rs, old.row, now.row); err != nil {
			return err
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
// (scanRanges): the version of every top and of every ancestor of one,
// and the keys under every top. An entry's record is its copy in the
// index (a bare id is looked up): the fields counted never change.
type subtreeScan struct {
	k        countsAt
	tops     []string
	prefix   []byte
	rs       []keyRange
	paths    []string       // the path of each entry range
	entry    map[string]int // the entry range of a path
	nEntries int
	entries  []*subtreeValue
	under    [][]subtreeValue
	done     []byte // the path key of the subtree's entry seen last
	last     int
}

type subtreeValue struct {
	path string
	v    []byte
}

// newSubtreeScan returns the scan of the subtrees of tops at k.gen.
func newSubtreeScan(k countsAt, tops []string) *subtreeScan {
	s := &subtreeScan{k: k, tops: tops, prefix: key(pCurrent, k.sandbox), entry: map[string]int{}, last: -1}
	want := func(p string) {
		if _, ok := s.entry[p]; !ok {
			s.entry[p] = len(s.rs)
			s.rs = append(s.rs, keyRange{prefix: currentPathPrefix(k.sandbox, p), from: currentKey(k.sandbox, p, k.gen), limit: 1})
			s.paths = append(s.paths, p)
		}
	}
	for _, top := range tops {
		for a := parentPath(top); a != ""; a = parentPath(a) {
			want(a)
		}
		want(top)
	}
	s.nEntries = len(s.rs)
	for _, top := range tops {
		s.rs = append(s.rs, keyRange{prefix: append(s.prefix[:len(s.prefix):len(s.prefix)], top+"/"...)})
	}
	s.entries = make([]*subtreeValue, s.nEntries)
	s.under = make([][]subtreeValue, len(tops))
	return s
}

// again returns a scan of the same ranges with nothing read yet (the
// ranges are shared: neither changes them).
func (s *subtreeScan) again() *subtreeScan {
	a := *s
	a.entries = make([]*subtreeValue, s.nEntries)
	a.under = make([][]subtreeValue, len(s.tops))
	a.done, a.last = nil, -1
	return &a
}

// row takes a key of range i and its value.
func (s *subtreeScan) row(i int, key, v []byte) error {
	if i < s.nEntries {
		s.entries[i] = &subtreeValue{s.paths[i], append([]byte(nil), v...)}
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
	t := i - s.nEntries
	s.under[t] = append(s.under[t], subtreeValue{string(pathKey[len(s.prefix) : len(pathKey)-1]), append([]byte(nil), v...)})
	return nil
}

// counts sums what the rows read contribute, looking records up in tx.
func (s *subtreeScan) counts(tx *Tx) (Counts, error) {
	var c Counts
	var err error
	recs := make([]*Record, s.nEntries)
	for i, e := range s.entries {
		if e != nil {
			if recs[i], err = tx.entryRecord(s.k.sandbox, e.path, e.v); err != nil {
				return c, err
			}
		}
	}
	for t, top := range s.tops {
		var f StateFilter
		var chain []string
		for a := parentPath(top); a != ""; a = parentPath(a) {
			chain = append(chain, a)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			if r := recs[s.entry[chain[i]]]; r != nil {
				f.Keep(r)
			}
		}
		if r := recs[s.entry[top]]; r != nil && f.Keep(r) {
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
// order): an entry under a newer record on an ancestor is replaced (a
// delete removes a subtree, a file replaces a directory, a new directory
// starts empty), and an entry under a delete, a file or a symlink is left
// out. It keeps the entries that may be ancestors of the records still to
// come: a stack as deep as the tree.
type StateFilter struct {
	stack []filterEntry
}

type filterEntry struct {
	path     string
	id       uint64
	blocks   bool // a delete, a file or a symlink: nothing lies under it
	replaced bool // dropped by a newer record on an ancestor
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
		if a.id > r.ID {
			replaced = true
		}
		if a.blocks && !a.replaced {
			orphan = true
		}
	}
	f.stack = append(f.stack, filterEntry{path: r.Path, id: r.ID, blocks: r.Kind == change.KindDelete || r.Type != change.TypeDir, replaced: replaced})
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
