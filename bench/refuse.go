package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spillway/spillway/exceptions"
)

// refuse closes a session that made RefuseFiles small files under an
// exception whose quota lets 10 through: every other one is refused
// (quota-files). Close must hold counters and a bounded sample, not the
// refusals, and the store must not grow by a record per refusal.
func (b *bench) refuse(ctx context.Context) error {
	n := b.cfg.RefuseFiles
	root := filepath.Join(b.work, "refuse")
	x := &exceptions.Exception{Sandbox: "flood", Patterns: []string{"/var/cache/build/**"}, Reason: "keep the build cache",
		Limits: exceptions.Limits{MaxFiles: 10}}
	d, err := b.floodSession(ctx, root, seed+4, x, n)
	if err != nil {
		return err
	}
	b.logf("refuse: wrote %d files in %s", n, fmtDur(d))
	storeBefore := dirBytes(filepath.Join(root, "store"))
	settle()
	res, err := closeInChild(root, "flood", "")
	if err != nil {
		return err
	}
	if res.Refused < int64(n-10) {
		return fmt.Errorf("close refused %d changes, want at least %d", res.Refused, n-10)
	}
	storeAfter := dirBytes(filepath.Join(root, "store"))
	grp := fmt.Sprintf("close %d files refused by quota", n)
	b.add(grp, "close (CloseSandbox, in a child)", []time.Duration{res.Close})
	b.addValue(grp, "peak Go heap in use (sampled every 10 ms)", fmt.Sprintf("%d MiB", res.HeapPeak>>20))
	b.addValue(grp, "Go heap reserved at the end (HeapSys)", fmt.Sprintf("%d MiB", res.HeapSys>>20))
	b.addValue(grp, "peak RSS of the child (VmHWM)", fmt.Sprintf("%d MiB", res.HWM>>20))
	b.addValue(grp, "store growth (badger dir, less its ballast)", fmt.Sprintf("%d KiB", (storeAfter-storeBefore)>>10))
	b.addValue(grp, "manifest", fmt.Sprintf("%d MiB", fileBytes(filepath.Join(root, "recovery", "flood", "1", "manifest.jsonl"))>>20))
	b.ratios = append(b.ratios, ratio{Name: fmt.Sprintf("peak Go heap closing %d refused files", n),
		Value: float64(res.HeapPeak >> 20), Target: 256, Unit: " MiB"})
	b.note("badger runs with its defaults but for a 64 MiB value-log file, a 16 MiB memtable and a 32 MiB block cache (store.blockCacheSize; filled only by table reads, which a close barely does), index cache off")
	return nil
}

// dirBytes sums the allocated bytes of the regular files under dir, less
// the store's ballast and the blob directory's marker (a 4 KiB block that
// tipped the quick run's "blob bytes / bytes of versions kept" over 1).
func dirBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Name() != "spillway-ballast" && fi.Name() != "spillway-blobs" {
			n += fileBytes(p)
		}
		return nil
	})
	return n
}
