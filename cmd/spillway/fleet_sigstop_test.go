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

	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/internal/testenv"
)

// TestFleetStoppedCloseFenced: h1 (TTL 2 s) is stopped with SIGSTOP in the
// middle of its close, after it marked the session closing and while it
// stores the documents' blobs, and stays stopped past its TTL; h2 opens
// the sandbox (taking the lease over); SIGCONT lets h1 go on: its close is
// fenced (nothing of it in the ledger) and every document of the session
// is recoverable on h1. Both roots check clean and the audit verifies.
// Connected directly, then through a PgBouncer in transaction pooling.
func TestFleetStoppedCloseFenced(t *testing.T) {
	requireRoot(t)
	for _, pool := range []string{"direct", "transaction pooling"} {
		t.Run(pool, func(t *testing.T) {
			url := pgDB(t)
			if pool != "direct" {
				if _, err := exec.LookPath("pgbouncer"); err != nil {
					testenv.Missing(t, "pgbouncer is not installed")
				}
				u, stop, err := pgtest.BouncerMode(url, "transaction")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(stop)
				url = u + "&default_query_exec_mode=exec"
			}
			testFleetStoppedCloseFenced(t, url)
		})
	}
}

func testFleetStoppedCloseFenced(t *testing.T, url string) {
	w := newWorld(t, sharedRootfs(t))
	f := twoHostsOn(t, w, url)
	must, h1env, h2env, h2root := f.must, f.h1, f.h2, f.h2root
	must(h1env, "image", "import", "base", w.rootfs)
	must(h1env, "create", "docs", "--image", "base")
	must(h1env, "exception", "add", "docs", "/home/user/Documents/**", "--reason", "documents")
	must(h2env, "image", "import", "base", w.rootfs)
	must(h1env, "fleet", "agent", "--once", "--ttl", "2s")
	must(h1env, "open", "docs")
	docs := w.writeDocs(1)
	// Enough documents that storing their blobs takes a while: h1 is
	// stopped among them, before it stages any record.
	for i := range 300 {
		p := fmt.Sprintf("/home/user/Documents/many/f%03d.txt", i)
		docs[p] = fmt.Sprintf("file %d of h1's session", i)
		os.MkdirAll(filepath.Dir(w.mnt(p)), 0o755)
		if err := os.WriteFile(w.mnt(p), []byte(docs[p]), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	hits := filepath.Join(w.dir, "failpoints")
	cmd := exec.Command(os.Args[0], "close", "docs")
	cmd.Env = append(os.Environ(), "SPILLWAY_TEST_MAIN=1", "SPILLWAY_ROOT="+filepath.Join(w.dir, "state"), "SPILLWAY_NO_PROGRESS=1", "SPILLWAY_FAILPOINT_LOG="+hits)
	cmd.Env = append(cmd.Env, h1env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if stopped {
			cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if b, _ := os.ReadFile(hits); bytes.Contains(b, []byte("close.blob-stored")) {
			if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			stopped = true
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the close stored no blob in 60 s: %s", errb.String())
		}
	}
	if b, _ := os.ReadFile(hits); bytes.Contains(b, []byte("close.batch-staged")) {
		t.Fatalf("h1 was stopped too late, after it staged its records:\n%s", b)
	}
	time.Sleep(2500 * time.Millisecond) // past h1's TTL
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	open := exec.CommandContext(ctx, os.Args[0], "open", "docs")
	open.Env = append(os.Environ(), "SPILLWAY_TEST_MAIN=1", "SPILLWAY_NO_PROGRESS=1")
	open.Env = append(open.Env, h2env...)
	if b, err := open.CombinedOutput(); err != nil {
		t.Fatalf("h2 open while h1 is stopped: %v\n%s", err, b)
	}
	for p := range docs {
		if _, err := os.Stat(filepath.Join(h2root, "mnt", "docs", p)); err == nil {
			t.Errorf("h2 sees %s of h1's unfinished close", p)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	err := cmd.Wait()
	if err == nil || !strings.Contains(errb.String(), "fenced: host h1 lost the lease of sandbox docs") ||
		!strings.Contains(errb.String(), "spillway recover ls docs --session 1") {
		t.Fatalf("h1's close after SIGCONT: %v, want fenced\n%s%s", err, out.String(), errb.String())
	}
	if st := docsOf(t, must(h2env, "persisted", "ls", "docs", "--json")); len(st) != 0 {
		t.Errorf("the ledger holds %d documents of a fenced close", len(st))
	}
	must(h2env, "close", "docs")
	ls := must(h1env, "recover", "ls", "docs", "--session", "1")
	for p, content := range docs {
		if !strings.Contains(ls, p) {
			t.Errorf("recover ls lacks %s", p)
			continue
		}
		if !strings.HasPrefix(p, "/home/user/Documents/doc") {
			continue // the 300 small files: listed is enough
		}
		dst := filepath.Join(w.dir, "out-"+filepath.Base(p))
		must(h1env, "recover", "export", "docs", p, dst)
		if b, err := os.ReadFile(dst); err != nil || string(b) != content {
			t.Errorf("recovered %s = %q (%v), want %q", p, b, err, content)
		}
	}
	if !strings.Contains(ls, "fenced") {
		t.Errorf("recover ls does not say fenced:\n%s", ls)
	}
	must(h1env, "check")
	must(h2env, "check")
	must(h2env, "audit", "verify")
	// h1 works on the sandbox again.
	must(h1env, "open", "docs")
	must(h1env, "close", "docs")
}
