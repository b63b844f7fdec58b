package store

import (
	"context"
	"fmt"
)

// IndexColumnsForBench gives kv six nullable columns with a partial
// unique index each, the layout StageBlindColumnsForBench writes: for the
// fleet-closes benchmark's bound only (PostgreSQL).
func (s *Store) IndexColumnsForBench(ctx context.Context) error {
	pb, ok := s.be.(*pgBackend)
	if !ok {
		return fmt.Errorf("store: index columns are for PostgreSQL only")
	}
	q := `ALTER TABLE kv ADD COLUMN i1 bytea, ADD COLUMN i2 bytea, ADD COLUMN i3 bytea, ADD COLUMN i4 bytea, ADD COLUMN i5 bytea, ADD COLUMN i6 bytea`
	for i := 1; i <= 6; i++ {
		q += fmt.Sprintf(`; CREATE UNIQUE INDEX kv_i%d ON kv (i%d) WHERE i%d IS NOT NULL`, i, i, i)
	}
	_, err := pb.pool.Exec(ctx, q)
	return err
}

// StageBlindColumnsForBench is StageBlindForBench with each record's
// index keys as columns of its own row (one INSERT of the records, sent
// at once), not rows of their own: what that layout's writes would cost a
// close. Nothing reads those columns; for the fleet-closes benchmark's
// bound only, on a store IndexColumnsForBench prepared.
func (tx *Tx) StageBlindColumnsForBench(sandbox string, gen uint64, recs []*Record, stale uint64) error {
	pt, ok := tx.b.(*pgTx)
	if !ok {
		return fmt.Errorf("store: index columns are for PostgreSQL only")
	}
	ids, err := tx.nextN("record", len(recs))
	if err != nil {
		return err
	}
	cols := make([][][]byte, 8) // k, v, i1 … i6; an empty index key is NULL
	for i := range cols {
		cols[i] = make([][]byte, 0, len(recs))
	}
	for i, r := range recs {
		r.ID = ids[i]
		tx.movePending(nil, r)
		v, err := encode(r)
		if err != nil {
			return err
		}
		cols[0], cols[1] = append(cols[0], key(pRec, r.ID)), append(cols[1], v)
		ks := recordIndexKeys(r)
		for j := range 6 {
			var k []byte
			if j < len(ks) {
				k = ks[j]
			}
			cols[2+j] = append(cols[2+j], k)
		}
		if err := tx.blindVersion(sandbox, r, gen, stale); err != nil {
			return err
		}
	}
	args := make([]any, len(cols))
	for i, c := range cols {
		args[i] = c
	}
	_, err = pt.tx.Exec(context.Background(), `INSERT INTO kv (k, v, i1, i2, i3, i4, i5, i6)
SELECT k, v, NULLIF(a, ''), NULLIF(b, ''), NULLIF(c, ''), NULLIF(d, ''), NULLIF(e, ''), NULLIF(f, '')
FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[], $8::bytea[]) AS t(k, v, a, b, c, d, e, f)`, args...)
	return pt.fail(err)
}
