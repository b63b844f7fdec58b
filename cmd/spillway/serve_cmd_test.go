package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeWithCLI runs `spillway serve` as its own process next to CLI
// commands on the same root: the commands work while it runs, a rejection
// through HTTP shows in `review show --json` as the CLI's would, and
// SIGINT stops serve with status 130.
func TestServeWithCLI(t *testing.T) {
	requireRoot(t)
	w := newWorld(t, sharedRootfs(t))
	setupBase(w)
	w.must("open", "docs")
	w.writeDocs(1)
	w.must("close", "docs")

	// Flags: a non-loopback address needs TLS.
	if r := w.sw(nil, "serve", "--listen", "0.0.0.0:0"); r.code != exitUsage || !strings.Contains(r.stderr, "not a loopback address") {
		t.Errorf("serve on 0.0.0.0: exit %d %s", r.code, r.stderr)
	}
	// A scope that names nothing is refused before listening, as review
	// ls refuses it.
	if r := w.sw(nil, "serve", "--listen", "127.0.0.1:0", "--sandbox", "nosuch"); r.code != exitError || r.stderr != "spillway: no sandbox named \"nosuch\" (see spillway ls)\n" {
		t.Errorf("serve --sandbox nosuch: exit %d %q", r.code, r.stderr)
	}
	if r := w.sw(nil, "serve", "--listen", "127.0.0.1:0", "--host", "bad host"); r.code != exitUsage || !strings.Contains(r.stderr, `invalid host name "bad host"`) {
		t.Errorf("serve --host 'bad host': exit %d %q", r.code, r.stderr)
	}
	if r := w.sw(nil, "serve", "--listen", "127.0.0.1:0", "--host", "nosuch"); r.code != exitError || r.stderr != "spillway: no host \"nosuch\" (see spillway fleet hosts)\n" {
		t.Errorf("serve --host nosuch: exit %d %q", r.code, r.stderr)
	}

	cmd := exec.Command(os.Args[0], "serve", "--listen", "127.0.0.1:0", "--reviewer", "bob")
	cmd.Env = append(os.Environ(), "SPILLWAY_TEST_MAIN=1", "SPILLWAY_ROOT="+filepath.Join(w.dir, "state"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	br := bufio.NewReader(out)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("serve printed no URL: %v %s", err, stderr.String())
	}
	if second, _ := br.ReadString('\n'); !strings.Contains(second, "; showing every sandbox; ") {
		t.Errorf("serve's startup does not say its scope: %q", second)
	}
	go io.Copy(io.Discard, br)
	m := regexp.MustCompile(`(http://127\.0\.0\.1:\d+)/login\?token=[0-9a-f]{64}`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("serve printed %q", line)
	}
	base := m[1]

	// CLI commands work while serve runs, at once.
	start := time.Now()
	ids := w.pendingIDs()
	if len(ids) < 2 {
		t.Fatalf("pending: %v", ids)
	}
	w.must("review", "approve", ids[0], "--note", "from the CLI")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("commands took %s while serve ran", d)
	}

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(m[0])
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = c.Get(base + "/queue")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindSubmatch(page)
	if csrf == nil || strings.Contains(string(page), fmt.Sprintf(`data-id="%s"`, ids[0])) {
		t.Fatalf("queue page: no csrf token, or it lists the record the CLI approved:\n%s", page)
	}
	resp, err = c.PostForm(base+"/record/"+ids[1]+"/reject", url.Values{"csrf": {string(csrf[1])}, "text": {"from the browser"}})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reject: %v %v", resp, err)
	}
	resp.Body.Close()

	var show struct {
		Status    string `json:"status"`
		Reason    string `json:"reason"`
		DecidedBy string `json:"decided_by"`
	}
	if err := json.Unmarshal([]byte(w.must("review", "show", ids[1], "--json")), &show); err != nil {
		t.Fatal(err)
	}
	if show.Status != "rejected" || show.Reason != "from the browser" || show.DecidedBy != "bob" {
		t.Errorf("review show after a browser rejection: %+v", show)
	}
	if log := w.must("log", "docs"); !strings.Contains(log, "review.reject") || !strings.Contains(log, "reviewer=bob") {
		t.Errorf("the audit log lacks the browser's rejection:\n%s", log)
	}
	w.must("audit", "verify")

	// The JSON API answers what the CLI's --json prints.
	for api, args := range map[string][]string{
		"/api/sandboxes":           {"ls", "--json"},
		"/api/review":              {"review", "ls", "--json"},
		"/api/review?sandbox=docs": {"review", "ls", "docs", "--json"},
		"/api/record/" + ids[0]:    {"review", "show", ids[0], "--json"},
		"/api/record/" + ids[1]:    {"review", "show", ids[1], "--json"},
	} {
		resp, err := c.Get(base + api)
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %v %v", api, resp, err)
		}
		var got, want any
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cli := w.must(args...)
		if err := json.Unmarshal([]byte(cli), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GET %s differs from spillway %s:\n%v\n%v", api, strings.Join(args, " "), got, want)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
		t.Errorf("serve after SIGINT: %v, want exit %d\n%s", err, exitInterrupted, stderr.String())
	}
}
