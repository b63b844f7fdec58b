package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestOpenFinishesAnInterruptedClose: a close killed at each of its
// failpoints is finished by the next open, which then opens the sandbox
// (overview.md: "finished by running it again, or by the next open"),
// with the documents of whichever generation the kill left. It once
// failed with a fence: finishing the close gave the lease back.
func TestOpenFinishesAnInterruptedClose(t *testing.T) {
	requireRoot(t)
	rootfs := sharedRootfs(t)
	w := newWorld(t, rootfs)
	setupBase(w)
	w.must("open", "docs")
	w.writeDocs(1)
	log := filepath.Join(w.dir, "hits")
	if r := w.sw([]string{"SPILLWAY_FAILPOINT_LOG=" + log}, "close", "docs"); r.code != 0 {
		t.Fatalf("close: %s", r.stderr)
	}
	b, _ := os.ReadFile(log)
	points := slices.Compact(strings.Fields(string(b)))
	for _, fp := range points {
		if !strings.HasPrefix(fp, "close.") {
			continue
		}
		t.Run(fp, func(t *testing.T) {
			w := newWorld(t, rootfs)
			setupBase(w)
			w.must("open", "docs")
			v1 := w.writeDocs(1)
			if r := w.sw([]string{"SPILLWAY_FAILPOINT=" + fp + ":1"}, "close", "docs"); !r.killed {
				t.Fatalf("not killed at %s: exit %d %s", fp, r.code, r.stderr)
			}
			r := w.sw(nil, "open", "docs")
			if r.code != 0 {
				t.Fatalf("open after a close killed at %s: exit %d\n%s", fp, r.code, r.stderr)
			}
			st := w.state()
			if len(st) != 0 && !sameDocs(st, v1) {
				t.Fatalf("after the open the state is %v", st)
			}
			if len(st) != 0 {
				for p, content := range v1 {
					if b, err := os.ReadFile(w.mnt(p)); err != nil || string(b) != content {
						t.Errorf("opened root: %s = %q (%v), want %q", p, b, err, content)
					}
				}
			}
			w.must("close", "docs")
			w.checkInvariants(nil)
		})
	}
}
