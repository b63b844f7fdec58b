package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/spillway/spillway/internal/pgtest"
)

// TestFleetOpenDeltaKilled: on a shared ledger h1 keeps a layer chain of
// its own (persist/layer_cache.go). h2 changes the documents; h1's next
// open builds a delta on its chain and is SIGKILLed at each step of that
// build; h1's open after the kill lays exactly the state h2 closed.
func TestFleetOpenDeltaKilled(t *testing.T) {
	requireRoot(t)
	pgtest.Require(t)
	t.Cleanup(pgtest.Stop)
	rootfs := sharedRootfs(t)
	for _, fp := range []string{"open.delta-prepared", "open.delta-written", "open.delta-committed"} {
		t.Run(fp, func(t *testing.T) {
			w := newWorld(t, rootfs)
			h1, h2, h2root := twoHosts(t, w)
			must := func(r result, what string) {
				t.Helper()
				if r.code != 0 || r.killed {
					t.Fatalf("%s: exit %d killed=%v\n%s%s", what, r.code, r.killed, r.stdout, r.stderr)
				}
			}
			t.Cleanup(func() {
				h1(nil, "rm", "--force", "docs")
				for _, m := range []string{filepath.Join(w.dir, "state", "mnt", "docs"), filepath.Join(h2root, "mnt", "docs")} {
					os.Remove(m)
				}
			})
			must(h1(nil, "image", "import", "base", rootfs), "h1 import")
			must(h2("image", "import", "base", rootfs), "h2 import")
			must(h1(nil, "create", "docs", "--image", "base"), "create")
			must(h1(nil, "exception", "add", "docs", "/home/user/Documents/**", "--reason", "documents"), "exception")
			must(h1(nil, "open", "docs"), "h1 open")
			w.writeDocs(1)
			must(h1(nil, "close", "docs"), "h1 close")
			must(h1(nil, "open", "docs"), "h1 open on its flat layer")
			must(h1(nil, "close", "docs"), "h1 close (no change)")
			must(h2("open", "docs"), "h2 open")
			want := map[string]string{}
			for i := range 3 {
				p := fmt.Sprintf("/home/user/Documents/doc%d.txt", i)
				want[p] = fmt.Sprintf("document %d from h2", i)
				if err := os.WriteFile(filepath.Join(h2root, "mnt", "docs", p), []byte(want[p]), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Remove(filepath.Join(h2root, "mnt", "docs", "home/user/Documents/doc4.txt")); err != nil {
				t.Fatal(err)
			}
			want["/home/user/Documents/doc3.txt"] = "document 3 version 1"
			must(h2("close", "docs"), "h2 close")
			if r := h1([]string{"SPILLWAY_FAILPOINT=" + fp + ":1"}, "open", "docs"); !r.killed {
				t.Fatalf("open not killed at %s: exit %d %s", fp, r.code, r.stderr)
			}
			must(h1(nil, "open", "docs"), "h1 open after the kill")
			for p, content := range want {
				if b, err := os.ReadFile(w.mnt(p)); err != nil || string(b) != content {
					t.Errorf("%s = %q (%v), want %q", p, b, err, content)
				}
			}
			if _, err := os.Lstat(w.mnt("/home/user/Documents/doc4.txt")); !os.IsNotExist(err) {
				t.Errorf("doc4.txt, deleted on h2, is back on h1: %v", err)
			}
			must(h1(nil, "close", "docs"), "h1 close")
			must(h1(nil, "check"), "h1 check")
			must(h1(nil, "gc"), "h1 gc")
			must(h1(nil, "check"), "h1 check after gc")
		})
	}
}
