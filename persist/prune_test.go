package persist

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// TestPruneVictims: the version in effect, the pending ones and every
// version that rejecting the pending ones in turn brings back are kept;
// of the rest, the newest keep.
func TestPruneVictims(t *testing.T) {
	sb := &store.Sandbox{Name: "s", State: store.StateClosed}
	rec := func(id uint64, st change.Status, review change.ReviewMode) *store.Record {
		return &store.Record{ID: id, Sandbox: "s", Path: "/p", Status: st, Review: review, Digest: fmt.Sprintf("sha256:%d", id)}
	}
	A, P, R := change.StatusApproved, change.StatusPending, change.StatusRejected
	after, before := change.ReviewAfter, change.ReviewBefore
	for _, c := range []struct {
		name string
		hist []*store.Record
		keep int
		want []uint64
	}{
		{"approved chain", []*store.Record{rec(1, A, after), rec(2, A, after), rec(3, A, after)}, 0, []uint64{2, 1}},
		{"keep one", []*store.Record{rec(1, A, after), rec(2, A, after), rec(3, A, after)}, 1, []uint64{1}},
		{"two pending after", []*store.Record{rec(1, A, after), rec(2, A, after), rec(3, P, after), rec(4, P, after)}, 0, []uint64{1}},
		{"pending before is kept", []*store.Record{rec(1, A, after), rec(2, A, after), rec(3, P, before)}, 0, []uint64{1}},
		{"rejected goes", []*store.Record{rec(1, A, after), rec(2, R, after)}, 0, []uint64{2}},
		{"purged goes", []*store.Record{rec(1, A, after), {ID: 2, Path: "/p", Status: A, Purged: true, Digest: "sha256:2"}}, 0, []uint64{2}},
		{"no content, nothing", []*store.Record{{ID: 1, Path: "/p", Status: A, Type: change.TypeDir}, rec(2, A, after)}, 0, nil},
	} {
		var got []uint64
		for _, r := range pruneVictims(sb, c.hist, c.keep, &PruneResult{}) {
			got = append(got, r.ID)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: pruned %v, want %v", c.name, got, c.want)
		}
	}
}
