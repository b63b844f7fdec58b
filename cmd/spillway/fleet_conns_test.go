package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/internal/pgtest"
)

// TestFleetKeptConnections: `fleet agent` and `serve` open the state
// directory for each heartbeat and each request, but on a PostgreSQL
// ledger they keep their server connection between them: the same server
// process serves heartbeats (or requests) a while apart. Without that,
// each one would cost the server a new connection (24–26 ms here), and a
// fleet of agents a new backend every few seconds per host. A database
// restart costs serve its kept connections, not its next requests.
func TestFleetKeptConnections(t *testing.T) {
	requireRoot(t)
	url := pgDB(t)
	dir := t.TempDir()
	env := append(os.Environ(), "SPILLWAY_TEST_MAIN=1", "SPILLWAY_ROOT="+filepath.Join(dir, "state"), "SPILLWAY_NO_PROGRESS=1",
		"SPILLWAY_STORE="+url, "SPILLWAY_HOST_ID=h1")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = env
		var errb strings.Builder
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("spillway %s: %v\n%s%s", strings.Join(args, " "), err, out, errb.String())
		}
		return string(out)
	}
	run("fleet", "init")
	ctx := context.Background()
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	// backends lists the server processes connected to the test's
	// database, other than db's own.
	backends := func() []uint32 {
		t.Helper()
		rows, err := db.Query(ctx, `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY pid`)
		if err != nil {
			t.Fatal(err)
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
		if err != nil {
			t.Fatal(err)
		}
		return pids
	}
	start := func(args ...string) (*exec.Cmd, *bufio.Scanner) {
		t.Helper()
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = env
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, bufio.NewScanner(out)
	}
	stop := func(cmd *exec.Cmd) {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}

	t.Run("agent", func(t *testing.T) {
		lastSeen := func() time.Time {
			var seen time.Time
			if err := db.QueryRow(ctx, `SELECT now()`).Scan(&seen); err != nil {
				t.Fatal(err)
			}
			return seen
		}
		// A heartbeat every 333 ms (the shortest TTL is 1 s).
		agent, _ := start("fleet", "agent", "--ttl", "1s")
		time.Sleep(800 * time.Millisecond)
		first := backends()
		time.Sleep(800 * time.Millisecond)
		t0 := lastSeen()
		second := backends()
		if len(first) != 1 || !slices.Equal(first, second) {
			t.Errorf("the agent's server processes %v, then %v two heartbeats later: want one, the same", first, second)
		}
		var hosts []hostJSON
		js := run("fleet", "hosts", "--json")
		if err := json.Unmarshal([]byte(js), &hosts); err != nil || len(hosts) != 1 || !hosts[0].LastSeen.After(t0.Add(-time.Second)) {
			t.Errorf("fleet hosts --json after heartbeats: %v %s", err, js)
		}
		stop(agent)
		// The server process ends a moment after its client has gone.
		left := backends()
		for deadline := time.Now().Add(3 * time.Second); len(left) != 0 && time.Now().Before(deadline); left = backends() {
			time.Sleep(50 * time.Millisecond)
		}
		if len(left) != 0 {
			t.Errorf("the agent stopped 3 s ago, its server processes %v are still connected", left)
		}
	})

	t.Run("serve", func(t *testing.T) {
		srv, out := start("serve", "--listen", "127.0.0.1:0")
		var login string
		for out.Scan() {
			if s, ok := strings.CutPrefix(out.Text(), "review at "); ok {
				login = s
				break
			}
		}
		if login == "" {
			t.Fatal("spillway serve printed no login URL")
		}
		go func() {
			for out.Scan() {
			}
		}()
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		get := func(u string) {
			t.Helper()
			resp, err := c.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				msg := string(body)
				if i := strings.Index(msg, `<p class="error"`); i >= 0 {
					msg = msg[i:]
				}
				t.Fatalf("GET %s: %s: %.300s", u, resp.Status, msg)
			}
		}
		get(login)
		base := login[:strings.Index(login, "/login")]
		var seen [][]uint32
		for _, p := range []string{"/queue", "/", "/queue"} {
			get(base + p)
			time.Sleep(300 * time.Millisecond)
			seen = append(seen, backends())
		}
		if len(seen[0]) == 0 || !slices.Equal(seen[0], seen[1]) || !slices.Equal(seen[1], seen[2]) {
			t.Errorf("serve's server processes after each of three requests: %v: want the same, kept", seen)
		}
		// A database restart (a crash: every connection cut) costs the
		// kept connections, not the next request.
		if err := pgtest.Restart(0); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"/queue", "/api/review", "/"} {
			get(base + p)
		}
		stop(srv)
	})
}
