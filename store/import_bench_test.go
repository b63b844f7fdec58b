package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/pgtest"
)

// BenchmarkImport10k imports a badger ledger of one sandbox with 10,000
// records in its state, made by 100 closes of 100 files (100 audit
// entries), into a fresh PostgreSQL database per iteration.
func BenchmarkImport10k(b *testing.B) {
	src, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	now := time.Now()
	err = src.Update(func(tx *Tx) error {
		if err := tx.PutSandbox(&Sandbox{Name: "docs", State: StateClosed, Session: 100, Generation: 100}); err != nil {
			return err
		}
		return tx.PutException(&exceptions.Exception{ID: "ex1", Sandbox: "docs", Patterns: []string{"/d/**"}, Reason: "r"})
	})
	if err != nil {
		b.Fatal(err)
	}
	for s := 1; s <= 100; s++ {
		err := src.Update(func(tx *Tx) error {
			for j := 0; j < 100; j++ {
				id, err := tx.NextRecordID()
				if err != nil {
					return err
				}
				r := &Record{ID: id, Sandbox: "docs", Session: uint64(s), Path: fmt.Sprintf("/d/s%d/f%d", s, j), Kind: change.KindAdd, Type: change.TypeFile,
					Size: 4096, Digest: fmt.Sprintf("sha256:%064x", id), Exception: "ex1", Status: change.StatusPending}
				if err := tx.PutRecord(r); err != nil {
					return err
				}
				if err := tx.PutCurrentNew("docs", 100, r); err != nil {
					return err
				}
			}
			_, err := tx.Append(now, "sandbox.close", "docs", map[string]string{"session": fmt.Sprint(s)})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dst, err := OpenURL(context.Background(), pgtest.URL(b), "")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := Import(context.Background(), src, dst, ImportOptions{Source: "/src", SourceHost: "solo"})
		if err != nil || res.Records != 10000 {
			b.Fatal(res, err)
		}
		b.StopTimer()
		dst.Close()
		b.StartTimer()
	}
}
