package persist

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// Check lists every disagreement between the store, the blobs, the
// snapshots and the mounts. An empty list means all agree.
func (e *Env) Check(ctx context.Context) ([]string, error) {
	var problems []string
	expected := map[string]bool{}
	open := map[string]bool{}
	digests := map[string][]uint64{}
	err := e.Store.View(func(tx *store.Tx) error {
		imgs, err := tx.ListImages()
		if err != nil {
			return err
		}
		for _, img := range imgs {
			expected[img.Snapshot] = true
		}
		sbs, err := tx.ListSandboxes()
		if err != nil {
			return err
		}
		for _, sb := range sbs {
			switch sb.State {
			case store.StateOpen:
				expected[sb.Snapshot] = true
				if sb.Layer != "" {
					expected[sb.Layer] = true
				}
				open[sb.Path] = true
			case store.StateClosing:
				problems = append(problems, fmt.Sprintf("sandbox %s: close was interrupted (run: spillway close %s)", sb.Name, sb.Name))
				expected[sb.Snapshot] = true
				expected[sb.Layer] = true
			}
			expected[layerKey(sb.Name, sb.Generation)] = true // may be built lazily
		}
		return tx.ForEachRecord("", func(r *store.Record) error {
			if r.Digest != "" {
				digests[r.Digest] = append(digests[r.Digest], r.ID)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(digests))
	for d := range digests {
		keys = append(keys, d)
	}
	sort.Strings(keys)
	for _, d := range keys {
		if err := e.Blobs.Verify(d); err != nil {
			problems = append(problems, fmt.Sprintf("record %s: %v", recordList(digests[d]), err))
		}
	}
	snaps, err := e.Snap.Keys(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range snaps {
		if !expected[k] {
			problems = append(problems, fmt.Sprintf("stray snapshot %s (spillway gc removes it)", k))
		}
	}
	mounts, err := snapshot.MountsUnder(e.Root)
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		if !open[m] {
			problems = append(problems, fmt.Sprintf("stray mount %s", m))
		}
	}
	for p := range open {
		if ok, err := snapshot.IsMounted(p); err == nil && !ok {
			problems = append(problems, fmt.Sprintf("open sandbox root %s is not mounted (spillway open mounts it again)", p))
		}
	}
	return problems, nil
}

func recordList(ids []uint64) string {
	var s []string
	for _, id := range ids {
		s = append(s, fmt.Sprintf("r%d", id))
	}
	return strings.Join(s, ", ")
}
