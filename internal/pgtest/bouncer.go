package pgtest

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Bouncer starts a PgBouncer (session pooling, unix socket only) in front
// of the server of dbURL and returns the URL of the same database through
// it, and a function that stops it.
func Bouncer(dbURL string) (string, func(), error) { return BouncerMode(dbURL, "session") }

// BouncerMode is Bouncer with PgBouncer's pool_mode: "session" or
// "transaction" (a server connection per transaction).
func BouncerMode(dbURL, mode string) (string, func(), error) {
	if mode != "session" && mode != "transaction" {
		return "", nil, fmt.Errorf("pgbouncer: pool mode %q", mode)
	}
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		return "", nil, errors.New("pgbouncer is not installed")
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", nil, err
	}
	q := u.Query()
	port := q.Get("port")
	if port == "" {
		port = "5432"
	}
	dir, err := os.MkdirTemp("", "spillway-pgbouncer-")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	// pgbouncer refuses to run as root: root runs it as postgres.
	if os.Geteuid() == 0 {
		uid, gid, err := giveToPostgres(dir)
		if err != nil {
			return "", nil, err
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr =
listen_port = 6432
unix_socket_dir = %s
auth_type = trust
auth_file = %s
pool_mode = %s
max_client_conn = 200
default_pool_size = 50
logfile = %s
pidfile = %s
`, q.Get("host"), port, dir, filepath.Join(dir, "users.txt"), mode, filepath.Join(dir, "log"), filepath.Join(dir, "pid"))
	users := fmt.Sprintf("%q \"\"\n", u.User.Username())
	for name, text := range map[string]string{"pgbouncer.ini": ini, "users.txt": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return "", nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM) // shut down at once
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		os.RemoveAll(dir)
	}
	sock := filepath.Join(dir, ".s.PGSQL.6432")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case err := <-done:
			done <- err
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			stop()
			return "", nil, fmt.Errorf("pgbouncer exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("pgbouncer: no socket %s after 10 s", sock)
		}
	}
	q.Set("host", dir)
	q.Set("port", "6432")
	u.RawQuery = q.Encode()
	return u.String(), stop, nil
}
