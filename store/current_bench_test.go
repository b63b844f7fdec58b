package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// BenchmarkListCurrent is the ledger's part of a full persisted ls: one
// range scan of a 100,000-path current-state index, each row's record
// read from the index's copy (b.N listings; ns/op is a whole listing).
func BenchmarkListCurrent(b *testing.B) {
	const paths = 100000
	for _, d := range []string{"badger", "postgres"} {
		b.Run(d, func(b *testing.B) {
			s := benchStore(b, d)
			for i := 0; i < paths; i += 2000 {
				err := s.Update(func(tx *Tx) error {
					for j := i; j < min(paths, i+2000); j++ {
						r := &Record{ID: uint64(j + 1), Sandbox: "docs", Session: 1, Path: fmt.Sprintf("/home/user/Documents/p%02d/doc%07d.odt", j%37, j),
							Kind: change.KindAdd, Type: "file", Size: 4096, Mode: 0o644, Mtime: t0, Created: t0, Exception: "ex1",
							Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Status: change.StatusApproved}
						if err := tx.PutRecord(r); err != nil {
							return err
						}
						if err := tx.PutCurrentNew("docs", 1, r); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				n := 0
				err := s.View(func(tx *Tx) error {
					return tx.ForEachCurrentRecordAt(context.Background(), "docs", 1, func(*Record) error { n++; return nil })
				})
				if err != nil || n != paths {
					b.Fatalf("listed %d paths, %v", n, err)
				}
			}
		})
	}
}
