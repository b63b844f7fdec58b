package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/pgtest"
)

// BenchmarkCommit50 is the ledger's part of a close of 50 files: one
// transaction drawing 50 record ids, writing the records and their
// current-state versions and appending an audit entry.
func BenchmarkCommit50(b *testing.B) {
	for _, d := range []string{"badger", "postgres"} {
		b.Run(d, func(b *testing.B) {
			s := benchStore(b, d)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				err := s.Update(func(tx *Tx) error {
					gen := uint64(i + 1)
					for j := 0; j < 50; j++ {
						id, err := tx.NextRecordID()
						if err != nil {
							return err
						}
						p := fmt.Sprintf("/home/user/Documents/f%d-%d", i, j)
						r := &Record{ID: id, Sandbox: "docs", Session: gen, Path: p, Kind: change.KindAdd, Type: "file", Size: 4096,
							Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Exception: "ex1", Status: change.StatusPending, Created: t0}
						if err := tx.PutRecord(r); err != nil {
							return err
						}
						if err := tx.PutCurrent("docs", p, gen, id); err != nil {
							return err
						}
					}
					_, err := tx.Append(time.Now(), "sandbox.close", "docs", map[string]string{"session": fmt.Sprint(gen)})
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStage50 is BenchmarkCommit50 through StageRecords, as close
// stages a batch: the ids drawn and the paths' versions read in one batch.
func BenchmarkStage50(b *testing.B) {
	for _, d := range []string{"badger", "postgres"} {
		b.Run(d, func(b *testing.B) {
			s := benchStore(b, d)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				err := s.Update(func(tx *Tx) error {
					gen := uint64(i + 1)
					recs := make([]*Record, 50)
					for j := range recs {
						p := fmt.Sprintf("/home/user/Documents/f%d-%d", i, j)
						recs[j] = &Record{Sandbox: "docs", Session: gen, Path: p, Kind: change.KindAdd, Type: "file", Size: 4096,
							Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Exception: "ex1", Status: change.StatusPending, Created: t0}
					}
					if err := tx.StageRecords("docs", gen, recs, nil); err != nil {
						return err
					}
					_, err := tx.Append(time.Now(), "sandbox.close", "docs", map[string]string{"session": fmt.Sprint(gen)})
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchStore opens a store of driver d ("badger" or "postgres") for a
// benchmark, closed when it ends.
func benchStore(b *testing.B, d string) *Store {
	b.Helper()
	var s *Store
	var err error
	if d == "badger" {
		s, err = Open(b.TempDir())
	} else {
		s, err = OpenURL(context.Background(), pgtest.URL(b), "")
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
