package serve

import (
	"net/http/httptest"
	"testing"

	"github.com/spillway/spillway/persist"
)

// TestNeighbours: a record page's j/k neighbours, found by a scan from the
// record on and by windows of ids below it, are those one scan of the
// whole filtered queue finds, for every pending record (and one past the
// last) under filters that match all, runs, and single records hundreds
// of ids from most others (the modified note, many/aa).
func TestNeighbours(t *testing.T) {
	w := newWorld(t, 400)
	req := httptest.NewRequest("GET", "/", nil)
	filters := []filter{{}, {Prefix: docs + "many/o"}, {Kind: "modify"}, {Prefix: docs + "many/a"}, {Prefix: docs + "many/aa"}}
	w.withEnv(func(e *persist.Env) {
		recs, err := e.ReviewList(req.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) < 300 {
			t.Fatalf("%d pending records, want the 400 and more", len(recs))
		}
		last := recs[len(recs)-1]
		// Every 7th record, the first two and the last, and one past it.
		var ids []uint64
		for i, r := range recs {
			if i%7 == 0 || i < 2 || i == len(recs)-1 {
				ids = append(ids, r.ID)
			}
		}
		ids = append(ids, last.ID+1)
		for _, f := range filters {
			for _, id := range ids {
				var wantPrev, wantNext uint64
				err := f.eachPending(req, e, 0, func(rec *persist.Record) error {
					switch {
					case rec.ID < id:
						wantPrev = rec.ID
					case rec.ID > id:
						wantNext = rec.ID
						return persist.ErrStop
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				prev, next, err := f.neighbours(req, e, id)
				if err != nil || prev != wantPrev || next != wantNext {
					t.Fatalf("filter %+v, r%d: neighbours r%d, r%d (%v), want r%d, r%d", f, id, prev, next, err, wantPrev, wantNext)
				}
				if f.Prefix == docs+"many/aa" && id == last.ID+1 && (prev == 0 || id-prev < 256) {
					t.Errorf("many/aa is r%d, %d ids below the end: want a neighbour past the first windows", prev, id-prev)
				}
			}
		}
	})
}
