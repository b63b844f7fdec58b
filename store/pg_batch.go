package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
)

// pgRangeChunk is how many ranges one query of scanRanges reads at most.
const pgRangeChunk = 1000

// pgRangeRows is how many rows a query of scanRanges reads of a range
// without a limit; a range with more is read on by scan.
const pgRangeRows = 256

// scanRanges reads the ranges in one query per pgRangeChunk of them: an
// index range scan per range (LATERAL), each at most its limit. The
// pending writes are merged in, as scan does; a range whose rows reached
// the query's limit before its own is read on by scan.
func (t *pgTx) scanRanges(ctx context.Context, rs []keyRange, values bool, fn func(i int, k, v []byte) error) error {
	pend := t.pendingFor(rs)
	return t.eachRangeChunk(ctx, rs, values, func(base int, chunk []keyRange, rows [][][2][]byte) error {
		return t.deliverChunk(ctx, base, chunk, rows, pend, values, fn)
	})
}

// scanRangesBoth is before.scanRanges and t.scanRanges with values, from
// one query per chunk: before is the view pgTx.before gives while t has
// sent none of its writes, and t holds them meanwhile (pgTx.hold), so the
// database holds the same rows for both, and only t's pending writes set
// them apart.
func (t *pgTx) scanRangesBoth(ctx context.Context, before *pgTx, rs []keyRange, fnBefore, fnNow func(i int, k, v []byte) error) error {
	if t.sent || !t.hold || before.root != t {
		return fmt.Errorf("store: scanRangesBoth outside a view of before through the transaction")
	}
	pend := t.pendingFor(rs)
	return t.eachRangeChunk(ctx, rs, true, func(base int, chunk []keyRange, rows [][][2][]byte) error {
		if err := before.deliverChunk(ctx, base, chunk, rows, nil, true, fnBefore); err != nil {
			return err
		}
		return t.deliverChunk(ctx, base, chunk, rows, pend, true, fnNow)
	})
}

// eachRangeChunk reads rs pgRangeChunk ranges a query and passes fn each
// chunk's rows as the database holds them, by range (a range without an
// end, which the query cannot bound, has none: deliverChunk scans it).
func (t *pgTx) eachRangeChunk(ctx context.Context, rs []keyRange, values bool, fn func(base int, chunk []keyRange, rows [][][2][]byte) error) error {
	cols := "r.k, ''::bytea"
	if values {
		cols = "r.k, r.v"
	}
	q := `SELECT b.i, ` + cols + ` FROM unnest($1::bytea[], $2::bytea[], $3::int8[]) WITH ORDINALITY AS b(lo, hi, n, i)
CROSS JOIN LATERAL (SELECT k, v FROM kv WHERE k >= b.lo AND k < b.hi ORDER BY k LIMIT b.n) AS r`
	for base := 0; base < len(rs); base += pgRangeChunk {
		chunk := rs[base:min(base+pgRangeChunk, len(rs))]
		var lo, hi [][]byte
		var lim []int64
		var idx []int // the ranges of the query, by their number in chunk
		for j, r := range chunk {
			if end := prefixEnd(r.prefix); end != nil {
				lo, hi, lim = append(lo, r.start()), append(hi, end), append(lim, int64(queryLimit(r)))
				idx = append(idx, j)
			}
		}
		rows := make([][][2][]byte, len(chunk))
		if len(idx) > 0 {
			res, err := t.tx.Query(ctx, q, lo, hi, lim)
			if err != nil {
				return t.fail(err)
			}
			for res.Next() {
				var i int64
				var k, v []byte
				if err := res.Scan(&i, &k, &v); err != nil {
					res.Close()
					return t.fail(err)
				}
				j := idx[i-1]
				rows[j] = append(rows[j], [2][]byte{k, v})
			}
			if err := res.Err(); err != nil {
				return t.fail(err)
			}
		}
		if err := fn(base, chunk, rows); err != nil {
			return err
		}
	}
	return nil
}

// deliverChunk passes to fn the rows read of the ranges of chunk (the
// first numbered base) merged with the pending writes pend.
func (t *pgTx) deliverChunk(ctx context.Context, base int, chunk []keyRange, rows [][][2][]byte, pend []pendingKV, values bool, fn func(i int, k, v []byte) error) error {
	for j, r := range chunk {
		if prefixEnd(r.prefix) == nil {
			if err := scanRangeOne(ctx, t, r, base+j, values, fn); err != nil {
				return err
			}
			continue
		}
		if err := t.deliverRange(ctx, r, base+j, rows[j], queryLimit(r), pend, values, fn); err != nil {
			return err
		}
	}
	return nil
}

// queryLimit is how many rows the query of scanRanges reads of r.
func queryLimit(r keyRange) int {
	if r.limit > 0 {
		return r.limit
	}
	return pgRangeRows
}

// deliverRange passes to fn the rows read of range r (number i; the query
// read at most lim), merged with the pending writes pend, up to r's
// limit, and reads on with scan where the query stopped short of it.
func (t *pgTx) deliverRange(ctx context.Context, r keyRange, i int, rows [][2][]byte, lim int, pend []pendingKV, values bool, fn func(i int, k, v []byte) error) error {
	slices.SortFunc(rows, func(a, b [2][]byte) int { return bytes.Compare(a[0], b[0]) })
	start, end := string(r.start()), string(prefixEnd(r.prefix))
	full := len(rows) == lim
	// The rows cover the range up to their last key when full, else all of it.
	lo, _ := slices.BinarySearchFunc(pend, start, func(p pendingKV, k string) int { return strings.Compare(p.k, k) })
	hi := lo
	for hi < len(pend) && pend[hi].k < end && (!full || pend[hi].k <= string(rows[len(rows)-1][0])) {
		hi++
	}
	ks := make([][]byte, len(rows))
	vs := make([][]byte, len(rows))
	for j, row := range rows {
		ks[j], vs[j] = row[0], row[1]
	}
	if hi > lo {
		ks, vs = mergePending(ks, vs, pend[lo:hi])
	}
	n := 0
	for j, k := range ks {
		var v []byte
		if values {
			v = vs[j]
		}
		if err := fn(i, k, v); err != nil {
			return err
		}
		if n++; r.limit > 0 && n == r.limit {
			return nil
		}
	}
	if !full {
		return nil
	}
	rest := r
	rest.from = append(append([]byte(nil), rows[len(rows)-1][0]...), 0)
	if r.limit > 0 {
		rest.limit = r.limit - n
	}
	return scanRangeOne(ctx, t, rest, i, values, fn)
}

// pendingFor returns the pending writes that may fall in the ranges rs,
// in key order: those from the first range's start to the last one's
// end (a close's counters read three ranges while some 450 writes wait,
// most of them records and index entries, which need no sorting).
func (t *pgTx) pendingFor(rs []keyRange) []pendingKV {
	if len(t.pending) == 0 || len(rs) == 0 {
		return nil
	}
	lo, hi := rs[0].start(), prefixEnd(rs[0].prefix)
	for _, r := range rs[1:] {
		if s := r.start(); bytes.Compare(s, lo) < 0 {
			lo = s
		}
		if e := prefixEnd(r.prefix); hi != nil && (e == nil || bytes.Compare(e, hi) > 0) {
			hi = e
		}
	}
	return t.pendingIn(lo, hi)
}

// readAhead reads the keys this transaction does not know yet, pgPage a
// query, and remembers them (an absent one as nothing), so that get
// answers them without a round trip.
func (t *pgTx) readAhead(keys [][]byte) error {
	var want [][]byte
	for _, k := range keys {
		_, written := t.pending[string(k)]
		_, known := t.read[string(k)]
		if !written && !known {
			want = append(want, k)
		}
	}
	for chunk := range slices.Chunk(want, pgPage) {
		rows, err := t.tx.Query(context.Background(), `SELECT k, v FROM kv WHERE k = ANY($1::bytea[])`, chunk)
		if err != nil {
			return t.fail(err)
		}
		for _, k := range chunk {
			t.remember(string(k), nil)
		}
		if err := t.rememberRows(rows); err != nil {
			return err
		}
	}
	return nil
}

// nextN draws n values of the counter's sequence in one query.
func (t *pgTx) nextN(name string, n int) ([]uint64, error) {
	seq, err := counterSequence(name)
	if err != nil || n <= 0 {
		return nil, err
	}
	rows, err := t.tx.Query(context.Background(), `SELECT nextval($1::regclass) FROM generate_series(1, $2::int)`, seq, n)
	if err != nil {
		return nil, t.fail(err)
	}
	out := make([]uint64, 0, n)
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, t.fail(err)
		}
		out = append(out, uint64(v))
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(err)
	}
	slices.Sort(out)
	return out, nil
}
