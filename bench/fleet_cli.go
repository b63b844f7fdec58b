package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// spillwayCLI returns the spillway binary the CLI scenarios run: the one
// SPILLWAY_BENCH_CLI names, else one built into the run's directory (by
// package path, so that it builds from the module root as `go run ./bench`
// runs and from bench/ as `go test` runs).
func (b *bench) spillwayCLI() (string, error) {
	if bin := os.Getenv("SPILLWAY_BENCH_CLI"); bin != "" {
		return bin, nil
	}
	bin := filepath.Join(b.work, "cli", "spillway")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	t0 := time.Now()
	out, err := exec.Command("go", "build", "-o", bin, "github.com/spillway/spillway/cmd/spillway").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/spillway: %v: %s", err, out)
	}
	b.logf("built %s in %s", bin, fmtDur(time.Since(t0)))
	return bin, nil
}

// cliHost is one host of a CLI scenario: its root, and the global flags
// every command of it gets (--root, --host-id, --store, --blobs).
type cliHost struct {
	bin, id, root string
	flags         []string
}

func newCLIHost(bin, id, root, store, blobs string) *cliHost {
	return &cliHost{bin: bin, id: id, root: root,
		flags: []string{"--root", root, "--host-id", id, "--store", store, "--blobs", blobs}}
}

// cmd is the command `spillway FLAGS args…` of the host, not started.
func (h *cliHost) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, h.bin, append(slices.Clone(h.flags), args...)...)
	cmd.Env = append(os.Environ(), "SPILLWAY_NO_PROGRESS=1")
	return cmd
}

// run runs `spillway args…` on the host and returns its output; err is
// its exit status.
func (h *cliHost) run(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	cmd := h.cmd(ctx, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// must runs `spillway args…` on the host; a failure is an error naming
// the command and its stderr.
func (h *cliHost) must(ctx context.Context, args ...string) (string, error) {
	out, errs, err := h.run(ctx, args...)
	if err != nil {
		return "", fmt.Errorf("%s: spillway %s: %v: %s", h.id, strings.Join(args, " "), err, strings.TrimSpace(errs))
	}
	return out, nil
}
