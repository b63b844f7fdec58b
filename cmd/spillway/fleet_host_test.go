package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/spillway/spillway/internal/pgtest"
)

// TestFleetHostInJSON: on two hosts sharing a ledger, `review ls --json`
// names the host whose session wrote each record, and `log --json` the
// host that wrote each entry: a close its session's host, a review
// decision or a create the host that ran it.
func TestFleetHostInJSON(t *testing.T) {
	requireRoot(t)
	pgtest.Require(t)
	t.Cleanup(pgtest.Stop)
	w := newWorld(t, sharedRootfs(t))
	h1, h2, h2root := twoHosts(t, w)
	must := func(r result, what string) string {
		t.Helper()
		if r.code != 0 || r.killed {
			t.Fatalf("%s: exit %d\n%s%s", what, r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	t.Cleanup(func() {
		h1(nil, "rm", "--force", "docs")
		for _, m := range []string{filepath.Join(w.dir, "state", "mnt", "docs"), filepath.Join(h2root, "mnt", "docs")} {
			exec.Command("umount", m).Run() // a leftover of a failed run only
		}
	})
	must(h1(nil, "image", "import", "base", w.rootfs), "h1 import")
	must(h1(nil, "create", "docs", "--image", "base"), "create")
	must(h1(nil, "exception", "add", "docs", "/home/user/Documents/**", "--reason", "documents"), "exception")
	must(h2("image", "import", "base", w.rootfs), "h2 import")
	write := func(root, name string) {
		p := filepath.Join(root, "mnt", "docs", "home/user/Documents", name)
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(h1(nil, "open", "docs"), "h1 open")
	write(filepath.Join(w.dir, "state"), "one.txt")
	must(h1(nil, "close", "docs"), "h1 close")
	must(h2("open", "docs"), "h2 open")
	write(h2root, "two.txt")
	must(h2("close", "docs"), "h2 close")

	type row struct {
		ID   uint64
		Path string
		Host *string
	}
	rows := func(js string) map[string]row {
		var rs []row
		if err := json.Unmarshal([]byte(js), &rs); err != nil {
			t.Fatal(err)
		}
		out := map[string]row{}
		for _, r := range rs {
			out[filepath.Base(r.Path)] = r
		}
		return out
	}
	hostOf := func(h *string) string {
		if h == nil {
			return "(none)"
		}
		return *h
	}
	all := rows(must(h1(nil, "review", "ls", "--json"), "review ls"))
	if len(all) != 2 || hostOf(all["one.txt"].Host) != "h1" || hostOf(all["two.txt"].Host) != "h2" {
		t.Fatalf("review ls --json: %+v, want one.txt by h1 and two.txt by h2", all)
	}
	only := rows(must(h2("review", "ls", "--json", "--host", "h2"), "review ls --host h2"))
	if len(only) != 1 || hostOf(only["two.txt"].Host) != "h2" {
		t.Fatalf("review ls --json --host h2: %+v", only)
	}
	must(h2("review", "approve", strconv.FormatUint(all["one.txt"].ID, 10)), "approve on h2")

	var events []struct {
		Type string
		Host *string
		Data map[string]string
	}
	if err := json.Unmarshal([]byte(must(h1(nil, "log", "docs", "--json"), "log")), &events); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range events {
		got = append(got, ev.Type+"@"+hostOf(ev.Host))
	}
	want := []string{"sandbox.create@h1", "exception.add@h1", "sandbox.open@h1", "sandbox.close@h1",
		"sandbox.open@h2", "sandbox.close@h2", "review.approve@h2"}
	if len(got) != len(want) {
		t.Fatalf("log docs --json: %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("log docs --json: %v, want %v", got, want)
		}
	}
	must(h2("audit", "verify"), "audit verify")
}
