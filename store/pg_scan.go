package store

import (
	"bytes"
	"context"
	"slices"
	"strings"
)

// pgMergeMax is how many pending writes a scan merges into what it reads;
// past it the scan sends them first (merging costs a pass over them all),
// unless a view of before reads through the transaction (pgTx.hold).
var pgMergeMax = 512

// pendingKV is a pending write: v nil is a delete.
type pendingKV struct {
	k string
	v []byte
}

// scan reads the keys in pages (WHERE k >= $1 AND k < $2 ORDER BY k
// LIMIT n), each read whole before fn sees it, so fn may use the
// transaction; a page starts after the last key of the one before. The
// transaction's pending writes are merged in (or, when there are many,
// sent first), as they were when the scan began.
func (t *pgTx) scan(ctx context.Context, prefix, from []byte, values bool, fn func(k, v []byte) error) error {
	start := append([]byte{}, prefix...)
	if bytes.Compare(from, prefix) > 0 {
		start = append([]byte{}, from...)
	}
	end := prefixEnd(prefix)
	cols := "k, ''::bytea"
	if values {
		cols = "k, v"
	}
	q := `SELECT ` + cols + ` FROM kv WHERE k >= $1 AND k < $2 ORDER BY k LIMIT $3`
	if end == nil {
		q = `SELECT ` + cols + ` FROM kv WHERE k >= $1 AND $2::bytea IS NULL ORDER BY k LIMIT $3`
	}
	if len(t.pending) > pgMergeMax && !t.hold {
		if err := t.flush(ctx); err != nil {
			return err
		}
	}
	over := t.pendingIn(start, end)
	limit := 16
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows, err := t.tx.Query(ctx, q, start, end, limit)
		if err != nil {
			return t.fail(err)
		}
		var ks, vs [][]byte
		for rows.Next() {
			var k, v []byte
			if err := rows.Scan(&k, &v); err != nil {
				rows.Close()
				return t.fail(err)
			}
			ks, vs = append(ks, k), append(vs, v)
		}
		if err := rows.Err(); err != nil {
			return t.fail(err)
		}
		full := len(ks) == limit
		var last string
		if full {
			last = string(ks[len(ks)-1])
		}
		// This page covers the keys up to its last one when full, else
		// the rest of the range: merge the pending writes among them.
		n := len(over)
		if full {
			n, _ = slices.BinarySearchFunc(over, last, func(p pendingKV, k string) int { return strings.Compare(p.k, k) })
			if n < len(over) && over[n].k == last {
				n++
			}
		}
		if n > 0 {
			ks, vs = mergePending(ks, vs, over[:n])
			over = over[n:]
		}
		for i, k := range ks {
			var v []byte
			if values {
				v = vs[i]
			}
			if err := fn(k, v); err != nil {
				return err
			}
		}
		if !full {
			return nil
		}
		start = append([]byte(last), 0) // the next key after the page's last
		limit = min(4*limit, pgPage)
	}
}

// pendingIn returns the pending writes with keys in [start, end) (end nil:
// no end), in key order.
func (t *pgTx) pendingIn(start, end []byte) []pendingKV {
	var out []pendingKV
	for k, v := range t.pending {
		if k >= string(start) && (end == nil || k < string(end)) {
			out = append(out, pendingKV{k, v})
		}
	}
	slices.SortFunc(out, func(a, b pendingKV) int { return strings.Compare(a.k, b.k) })
	return out
}

// mergePending merges the sorted pending writes into the sorted keys and
// values read: a pending value replaces or adds a key, a delete drops it.
func mergePending(ks, vs [][]byte, over []pendingKV) ([][]byte, [][]byte) {
	var mk, mv [][]byte
	i := 0
	for _, p := range over {
		for i < len(ks) && string(ks[i]) < p.k {
			mk, mv = append(mk, ks[i]), append(mv, vs[i])
			i++
		}
		if i < len(ks) && string(ks[i]) == p.k {
			i++ // replaced or deleted
		}
		if p.v != nil {
			mk, mv = append(mk, []byte(p.k)), append(mv, p.v)
		}
	}
	return append(mk, ks[i:]...), append(mv, vs[i:]...)
}
