package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/store"
)

// Sizes that make each operation run well past the interrupt on a fast
// machine: check and approve --all scan the pending records, open applies
// the persisted files.
const (
	interruptPending = 30000
	interruptFiles   = 5000
	interruptAfter   = 400 * time.Millisecond
	interruptBound   = 2 * time.Second
)

// TestInterrupt sends SIGINT to a long check, review approve --all and
// open: each stops promptly with status 130 and "spillway: interrupted",
// leaves a state that check accepts, and finishes when run again.
func TestInterrupt(t *testing.T) {
	requireRoot(t)
	w := newWorld(t, sharedRootfs(t))
	t.Cleanup(func() { w.sw(nil, "close", "files") })
	w.must("image", "import", "base", w.rootfs)
	w.must("create", "big", "--image", "base")
	w.must("create", "files", "--image", "base")
	fillRecords(t, w, "big", interruptPending, "pending")
	fillRecords(t, w, "files", interruptFiles, "approved")

	t.Run("check", func(t *testing.T) {
		w.interrupt(t, "", "check")
		w.must("check")
	})
	t.Run("approve-all", func(t *testing.T) {
		// A batch is committed: the interrupt falls between batches, or
		// in one.
		w.interrupt(t, "review.committed", "review", "approve", "--all", "big")
		counts := countStatus(t, w, "big")
		done := counts["approved"]
		if done+counts["pending"] != interruptPending || done < 500 || done == interruptPending {
			t.Fatalf("after the interrupt: %v, want some of %d approved, some pending", counts, interruptPending)
		}
		// Whole batches of 500 are decided, as after a crash between them.
		if done%500 != 0 {
			t.Errorf("%d records approved: not whole batches", done)
		}
		w.must("check")
		w.must("audit", "verify")
		w.must("review", "approve", "--all", "big")
		if counts := countStatus(t, w, "big"); counts["approved"] != interruptPending {
			t.Errorf("after the rerun: %v, want all %d approved", counts, interruptPending)
		}
	})
	t.Run("open", func(t *testing.T) {
		// The layer's snapshot is prepared: the interrupt falls in the
		// apply loop.
		w.interrupt(t, "open.layer-prepared", "open", "files")
		if out := w.must("ls", "--json"); !strings.Contains(out, `"files"`) || strings.Count(out, `"open"`) != 0 {
			t.Errorf("after the interrupted open: %s", out)
		}
		w.must("check")
		w.must("open", "files")
		last := filepath.Join(w.dir, "state", "mnt", "files", fillPath(interruptFiles-1))
		if b, err := os.ReadFile(last); err != nil || string(b) != fillContent {
			t.Errorf("after the rerun: %s = %q, %v", last, b, err)
		}
		w.must("close", "files")
	})
}

// interrupt starts spillway with args, sends SIGINT once it hit failpoint
// point (after interruptAfter when point is ""), and checks it exits within
// interruptBound, interrupted.
func (w *world) interrupt(t *testing.T, point string, args ...string) {
	t.Helper()
	hits := filepath.Join(t.TempDir(), "hits")
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SPILLWAY_TEST_MAIN=1", "SPILLWAY_ROOT="+filepath.Join(w.dir, "state"), "SPILLWAY_NO_PROGRESS=1",
		"SPILLWAY_FAILPOINT_LOG="+hits)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ready := time.After(interruptAfter)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-done:
			t.Fatalf("spillway %s finished in %s, before the interrupt (%v): make the state larger\n%s%s",
				strings.Join(args, " "), time.Since(start), err, out.String(), errb.String())
		case <-ready:
			if point == "" {
				break wait
			}
		case <-tick.C:
			if b, _ := os.ReadFile(hits); point != "" && bytes.Contains(b, []byte(point+"\n")) {
				break wait
			}
		}
	}
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("spillway %s ignored SIGINT for 30s", strings.Join(args, " "))
	}
	took := time.Since(sent)
	t.Logf("spillway %s: interrupted after %s, stopped in %s", strings.Join(args, " "), sent.Sub(start), took)
	if took > interruptBound {
		t.Errorf("spillway %s took %s to stop after SIGINT, want under %s", strings.Join(args, " "), took, interruptBound)
	}
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exitInterrupted {
		t.Errorf("spillway %s: %v, want exit status %d\n%s", strings.Join(args, " "), err, exitInterrupted, errb.String())
	}
	if errb.String() != "spillway: interrupted\n" {
		t.Errorf("spillway %s: stderr %q, want %q", strings.Join(args, " "), errb.String(), "spillway: interrupted\n")
	}
}

const fillContent = "persisted document\n"

func fillPath(i int) string {
	return fmt.Sprintf("/home/user/Documents/p%02d/s%03d/doc%07d.txt", i%37, (i/37)%100, i)
}

// fillRecords writes n records of one closed session of sandbox sb directly
// through the store, as closes would have left them (review after, all in
// the persisted state), every one keeping the same real blob.
func fillRecords(t *testing.T, w *world, sb string, n int, status string) {
	t.Helper()
	root := filepath.Join(w.dir, "state")
	blobs, err := persist.NewBlobs(filepath.Join(root, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	digest, size, err := blobs.Put(strings.NewReader(fillContent))
	if err != nil {
		t.Fatal(err)
	}
	if err := blobs.Sync(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	err = st.Update(func(tx *store.Tx) error {
		s, err := tx.GetSandbox(sb)
		if err != nil {
			return err
		}
		s.Session, s.Generation = 1, 1
		if err := tx.PutSession(&store.Session{Sandbox: sb, N: 1, State: store.StateClosed, Opened: now, Closed: now, ClosedGeneration: 1}); err != nil {
			return err
		}
		// Records written past persist: its current-state index is built
		// again from them by the next command (persist/current.go).
		if err := tx.DeleteMeta("current-ready:" + sb); err != nil {
			return err
		}
		return tx.PutSandbox(s)
	})
	if err != nil {
		t.Fatal(err)
	}
	const batch = 2000
	for i := 0; i < n; i += batch {
		err := st.Update(func(tx *store.Tx) error {
			for j := i; j < min(n, i+batch); j++ {
				id, err := tx.NextRecordID()
				if err != nil {
					return err
				}
				r := &store.Record{ID: id, Sandbox: sb, Session: 1, Path: fillPath(j), Kind: change.KindAdd, Type: "file",
					Size: size, Mode: 0o644, UID: 1000, GID: 1000, Mtime: now, Digest: digest, Exception: "ex1",
					Review: "after", Status: change.Status(status), Created: now}
				if err := tx.PutRecord(r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// countStatus counts the records of sandbox sb by status.
func countStatus(t *testing.T, w *world, sb string) map[string]int {
	t.Helper()
	st, err := store.Open(filepath.Join(w.dir, "state", "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	counts := map[string]int{}
	err = st.View(func(tx *store.Tx) error {
		return tx.ForEachRecord(context.Background(), sb, func(r *store.Record) error {
			counts[string(r.Status)]++
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return counts
}
