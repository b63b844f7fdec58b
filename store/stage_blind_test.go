package store

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// TestStageBlindForBenchWritesWhatStageRecordsWrites: the fleet-closes
// bound writes, for the benchmark's cycle (the same paths modified at
// every generation), the keys StageRecords writes, with the same values
// but for the change log's (whose earlier record it does not read), and
// none of the state counters.
func TestStageBlindForBenchWritesWhatStageRecordsWrites(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		staged, _ := newStore(t)
		blind, _ := newStore(t)
		for gen := uint64(1); gen <= 4; gen++ {
			recs := func() []*Record {
				var out []*Record
				for j := range 5 {
					out = append(out, &Record{Sandbox: "docs", Session: gen, Path: fmt.Sprintf("/home/user/f%d", j),
						Kind: change.KindModify, Type: change.TypeFile, Size: 4096, Exception: "ex1", Status: change.StatusPending})
				}
				return out
			}
			mustUpdate(t, staged, func(tx *Tx) error { return tx.StageRecords("docs", gen, recs(), nil) })
			var stale uint64
			if gen > 2 {
				stale = gen - 2
			}
			mustUpdate(t, blind, func(tx *Tx) error { return tx.StageBlindForBench("docs", gen, recs(), stale) })
		}
		a, b := dumpLedger(t, staged), dumpLedger(t, blind)
		for k, v := range a {
			if strings.HasPrefix(k, pCounts) {
				delete(a, k) // the state counters: not written blind
				continue
			}
			w, ok := b[k]
			switch {
			case !ok:
				t.Errorf("key %q written by StageRecords only", k)
			case !strings.HasPrefix(k, pChangeLog) && !bytes.Equal(v, w):
				t.Errorf("key %q: StageRecords wrote %x, the blind stage %x", k, v, w)
			}
		}
		for k := range b {
			if _, ok := a[k]; !ok {
				t.Errorf("key %q written by the blind stage only", k)
			}
		}
		if len(a) < 4*5*9-2*5 {
			t.Errorf("StageRecords wrote %d keys: the comparison covers too little", len(a))
		}
	})
}
