package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// TestScansStopOnCancel: a scan whose context is cancelled ends with the
// context's error within ctxEvery keys, and a cancelled chunked delete
// deletes nothing.
func TestScansStopOnCancel(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		const n = 4000
		for i := 0; i < n; i += 2000 {
			mustUpdate(t, s, func(tx *Tx) error {
				for j := i; j < i+2000; j++ {
					id, err := tx.NextRecordID()
					if err != nil {
						return err
					}
					r := &Record{ID: id, Sandbox: "a", Session: 1, Path: fmt.Sprintf("/d/f%06d", j), Exception: "ex1", Status: change.StatusPending}
					if err := tx.PutRecord(r); err != nil {
						return err
					}
				}
				return nil
			})
		}
		for name, scan := range map[string]func(tx *Tx, ctx context.Context, fn func(*Record) error) error{
			"all":     func(tx *Tx, ctx context.Context, fn func(*Record) error) error { return tx.ForEachRecord(ctx, "", fn) },
			"sandbox": func(tx *Tx, ctx context.Context, fn func(*Record) error) error { return tx.ForEachRecord(ctx, "a", fn) },
			"pending": func(tx *Tx, ctx context.Context, fn func(*Record) error) error {
				return tx.ForEachPending(ctx, "a", fn)
			},
			"exception": func(tx *Tx, ctx context.Context, fn func(*Record) error) error {
				return tx.ForEachExceptionRecord(ctx, "ex1", fn)
			},
		} {
			ctx, cancel := context.WithCancel(context.Background())
			seen := 0
			err := s.View(func(tx *Tx) error {
				return scan(tx, ctx, func(*Record) error {
					if seen++; seen == 10 {
						cancel()
					}
					return nil
				})
			})
			cancel()
			if !errors.Is(err, context.Canceled) || seen >= 10+ctxEvery {
				t.Errorf("%s: %v after %d records, want context.Canceled within %d", name, err, seen, 10+ctxEvery)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if got, err := s.DeleteSessionRecordsChunked(ctx, "a", 1, 1000); !errors.Is(err, context.Canceled) || got != 0 {
			t.Errorf("cancelled chunked delete: %d, %v; want 0, context.Canceled", got, err)
		}
	})
}
