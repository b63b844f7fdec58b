package persist

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/snapshot"
)

// listed returns the paths the recovery area of docs lists now.
func (f *fixture) listed() map[string]change.Verdict {
	f.t.Helper()
	out := map[string]change.Verdict{}
	err := f.e.RecoverList(f.ctx, "docs", 0, "", func(x RecoverEntry) error {
		out[x.Path] = x.Verdict
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// TestRetentionByTime checks, on both snapshotters, that discarded content
// is recoverable for --keep-discarded and refused content for
// --keep-refused, by the env's clock, and that gc drops what expired.
func TestRetentionByTime(t *testing.T) {
	for _, kind := range []string{snapshot.KindOverlay, snapshot.KindNative} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, kind)
			f.except(func(x *exceptions.Exception) { x.Limits.MaxFileSize = 4 }, "/home/user/Documents/**")
			start := time.Now().UTC()
			now := start
			f.e.clock = func() time.Time { return now }
			root := f.open()
			write(t, root, "home/user/Documents/big.txt", "too large for the rule", 0o644)
			write(t, root, "tmp/letter.txt", "dear sir", 0o644)
			sum := f.close()
			if !sum.Recovery.Kept() || sum.Recovery.DiscardedUntil.Sub(start) != 24*time.Hour || sum.Recovery.RefusedUntil.Sub(start) != 7*24*time.Hour {
				t.Fatalf("summary says kept %+v, want discarded 24h and refused 7d after %v", sum.Recovery, start)
			}
			if got := f.listed(); got["/tmp/letter.txt"] != change.VerdictDiscard || got["/home/user/Documents/big.txt"] != change.VerdictRefuse {
				t.Fatalf("recovery area lists %v", got)
			}
			now = start.Add(25 * time.Hour)
			if got := f.listed(); got["/tmp/letter.txt"] != "" || got["/home/user/Documents/big.txt"] == "" {
				t.Fatalf("after 25h the area lists %v, want only the refused file", got)
			}
			freed, err := f.e.GC(f.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if freed.Recovery.Discarded != 1 {
				t.Fatalf("gc dropped %+v, want the discarded content of one session", freed.Recovery)
			}
			tree := filepath.Join(f.e.root, "recovery", "docs", "1", "tree")
			if _, err := os.Lstat(filepath.Join(tree, "tmp", "letter.txt")); !os.IsNotExist(err) {
				t.Fatalf("gc left the expired discarded file: %v", err)
			}
			r, _, err := f.e.RecoverOpen(f.ctx, "docs", "/home/user/Documents/big.txt", 0)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r)
			r.Close()
			if string(b) != "too large for the rule" {
				t.Fatalf("refused content reads %q", b)
			}
			now = start.Add(8 * 24 * time.Hour)
			if freed, err = f.e.GC(f.ctx); err != nil {
				t.Fatal(err)
			}
			if freed.Recovery.Sessions != 1 {
				t.Fatalf("gc after 8 days dropped %+v, want the session", freed.Recovery)
			}
			if _, err := os.Lstat(filepath.Join(f.e.root, "recovery", "docs", "1")); !os.IsNotExist(err) {
				t.Fatalf("the expired session stays: %v", err)
			}
			if got := f.listed(); len(got) != 0 {
				t.Fatalf("area lists %v after expiry", got)
			}
		})
	}
}

// TestRecoveryAfterCrashedClose checks that a close that stopped after its
// commit, before its root went to the recovery area, loses nothing: the
// next command that cleans the sandbox up moves it first.
func TestRecoveryAfterCrashedClose(t *testing.T) {
	for _, kind := range []string{snapshot.KindOverlay, snapshot.KindNative} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, kind)
			root := f.open()
			write(t, root, "tmp/letter.txt", "dear sir", 0o644)
			sb, err := f.e.getSandbox("docs")
			if err != nil {
				t.Fatal(err)
			}
			// What close does up to its commit, by hand.
			if err := f.e.refuseHeld(sb); err != nil {
				t.Fatal(err)
			}
			if err := f.e.markClosing(sb); err != nil {
				t.Fatal(err)
			}
			if err := f.e.unmountRoot("docs", sb.Path, sb.State); err != nil {
				t.Fatal(err)
			}
			sum, err := f.e.collect(context.Background(), sb, CloseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.e.commitClose(context.Background(), sb, sum); err != nil {
				t.Fatal(err)
			}
			// The next open finishes the close's move first.
			f.open()
			r, _, err := f.e.RecoverOpen(f.ctx, "docs", "/tmp/letter.txt", 1)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r)
			r.Close()
			if string(b) != "dear sir" {
				t.Fatalf("recovered %q", b)
			}
		})
	}
}

// TestRetentionResumesDrop: gc dropping the discarded content of a session
// (refused entries moved into tree.new, then tree renamed to tree.old and
// tree.new to tree) resumes from what a killed earlier try left — refused
// entries half moved, a stale tree.old — keeping every refused entry.
func TestRetentionResumesDrop(t *testing.T) {
	for _, left := range []string{"half moved", "stale tree.old", "both renamed"} {
		t.Run(left, func(t *testing.T) {
			f := newFixture(t, snapshot.KindOverlay)
			f.except(func(x *exceptions.Exception) { x.Limits.MaxFileSize = 4 }, "/home/user/Documents/**")
			start := time.Now().UTC()
			now := start
			f.e.clock = func() time.Time { return now }
			root := f.open()
			write(t, root, "home/user/Documents/big.txt", "too large for the rule", 0o644)
			write(t, root, "home/user/Documents/huge.txt", "also too large", 0o644)
			for _, n := range []string{"a", "b", "c"} {
				write(t, root, "tmp/"+n+".txt", "junk", 0o644)
			}
			f.close()
			dir := filepath.Join(f.e.root, "recovery", "docs", "1")
			tree, fresh, old := filepath.Join(dir, "tree"), filepath.Join(dir, "tree.new"), filepath.Join(dir, "tree.old")
			docs := "home/user/Documents"
			switch left {
			case "half moved": // killed inside moveEntries: one refused file moved
				if err := os.MkdirAll(filepath.Join(fresh, docs), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(filepath.Join(tree, docs, "big.txt"), filepath.Join(fresh, docs, "big.txt")); err != nil {
					t.Fatal(err)
				}
			case "stale tree.old": // killed between the two renames
				if err := os.Mkdir(fresh, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(filepath.Join(fresh, docs), 0o700); err != nil {
					t.Fatal(err)
				}
				for _, n := range []string{"big.txt", "huge.txt"} {
					if err := os.Rename(filepath.Join(tree, docs, n), filepath.Join(fresh, docs, n)); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.Rename(tree, old); err != nil {
					t.Fatal(err)
				}
			case "both renamed": // killed before the session was marked
				if err := os.MkdirAll(filepath.Join(old, "tmp"), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(old, "tmp", "a.txt"), []byte("junk"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			now = start.Add(25 * time.Hour)
			if _, err := f.e.GC(f.ctx); err != nil {
				t.Fatalf("gc after the earlier try (%s): %v", left, err)
			}
			for n, want := range map[string]string{"big.txt": "too large for the rule", "huge.txt": "also too large"} {
				r, _, err := f.e.RecoverOpen(f.ctx, "docs", "/"+docs+"/"+n, 0)
				if err != nil {
					t.Fatalf("refused %s after gc: %v", n, err)
				}
				b, _ := io.ReadAll(r)
				r.Close()
				if string(b) != want {
					t.Fatalf("refused %s reads %q", n, b)
				}
			}
			for _, p := range []string{old, fresh, filepath.Join(tree, "tmp", "a.txt")} {
				if _, err := os.Lstat(p); !os.IsNotExist(err) {
					t.Errorf("%s left after gc: %v", p, err)
				}
			}
		})
	}
}
