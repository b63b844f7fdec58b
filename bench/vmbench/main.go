// Command vmbench measures `spillway run --vm`: the wall time of
// `run --vm NAME -- true` (open excluded and included) split into setup,
// boot to init, CMD and power-off, QEMU's CPU time, QEMU's and virtiofsd's peak RSS, the
// time to build the image disk, and the changes stream's throughput.
//
//	go run ./bench/vmbench [-n 5] [-mb 100]
//
// It builds spillway and its guest init, imports the busybox test rootfs
// into a fresh state directory and runs everything as a user would.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/testrootfs"
	"github.com/spillway/spillway/vm"
)

func main() {
	n := flag.Int("n", 5, "runs per scenario")
	mb := flag.Int("mb", 100, "MiB written by the stream scenario")
	flag.Parse()
	if err := run(*n, *mb); err != nil {
		fmt.Fprintln(os.Stderr, "vmbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	dir, spillway, timings string
}

func run(n, mb int) error {
	dir, err := os.MkdirTemp("", "vmbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{dir: dir, spillway: filepath.Join(dir, "spillway"), timings: filepath.Join(dir, "timings.jsonl")}
	defer b.sp("close", "--force", "docs")
	for _, c := range [][]string{{"build", "-o", b.spillway, "./cmd/spillway"}, {"build", "-o", filepath.Join(dir, vm.InitName), "./cmd/spillway-vminit"}} {
		cmd := exec.Command("go", c...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	if err := testrootfs.Build(filepath.Join(dir, "busybox")); err != nil {
		return err
	}
	for _, a := range [][]string{
		{"image", "import", "base", filepath.Join(dir, "busybox")},
		{"create", "docs", "--image", "base"},
		{"exception", "add", "docs", "/home/user/Documents/**", "--reason", "bench"},
		{"vm", "setup"},
	} {
		if _, err := b.sp(a...); err != nil {
			return err
		}
	}
	fmt.Printf("vmbench: %d runs per row, busybox image, TCG unless KVM works; seconds (median, min–max)\n\n", n)
	fmt.Printf("| scenario | wall | setup | boot→init | guest kernel→/init | guest /init→ready | CMD | power-off | apply | disks | QEMU CPU | QEMU RSS MiB | virtiofsd RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	// The first run builds the image's disk (cold cache).
	os.Remove(b.timings)
	if _, err := b.sp("run", "--vm", "docs", "--", "true"); err != nil {
		return err
	}
	b.row("first run (disk built)", nil)
	for _, sc := range []struct {
		name string
		args []string
	}{
		{"open sandbox, --share none", []string{"run", "--vm", "docs", "--", "true"}},
		{"closed sandbox (open+close included), none", []string{"run", "--vm", "docs", "--close", "--", "true"}},
		{"open sandbox, --share virtiofs", []string{"run", "--vm", "docs", "--share", "virtiofs", "--", "true"}},
	} {
		os.Remove(b.timings)
		var walls []float64
		for i := 0; i < n; i++ {
			if strings.Contains(sc.name, "closed") {
				b.sp("close", "docs") // already closed is fine
			} else if _, err := b.sp("open", "docs"); err != nil {
				return err
			}
			t := time.Now()
			if _, err := b.sp(sc.args...); err != nil {
				return err
			}
			walls = append(walls, time.Since(t).Seconds())
		}
		b.row(sc.name, walls)
	}
	// Stream throughput: CMD writes mb MiB in one file.
	os.Remove(b.timings)
	b.sp("open", "docs")
	cmd := fmt.Sprintf("dd if=/dev/zero of=/home/user/Documents/big bs=1M count=%d 2>/dev/null", mb)
	if _, err := b.sp("run", "--vm", "docs", "--", "sh", "-c", cmd); err != nil {
		return err
	}
	b.row(fmt.Sprintf("CMD writes %d MiB", mb), nil)
	ts := b.read()
	if len(ts) == 1 && ts[0].Stream > 0 {
		t := ts[0]
		fmt.Printf("\nstream: %d bytes; guest end of CMD → STREAMED %.2f s (%.0f MB/s, includes sync); host apply %.2f s (%.0f MB/s)\n",
			t.Bytes, t.Stream/1000, float64(t.Bytes)/1e6/(t.Stream/1000), t.Apply/1000, float64(t.Bytes)/1e6/(t.Apply/1000))
	}
	// The image disk alone.
	t := time.Now()
	tmp := filepath.Join(dir, "image.erofs")
	if err := vm.TreeDisk(tmp, filepath.Join(dir, "busybox")); err != nil {
		return err
	}
	fmt.Printf("image disk: mkfs.erofs of the busybox rootfs %.3f s\n", time.Since(t).Seconds())
	return nil
}

func (b *bench) sp(args ...string) ([]byte, error) {
	cmd := exec.Command(b.spillway, append([]string{"--root", filepath.Join(b.dir, "state")}, args...)...)
	cmd.Env = append(os.Environ(), "SPILLWAY_VMINIT="+filepath.Join(b.dir, vm.InitName), "SPILLWAY_VM_TIMINGS="+b.timings, "SPILLWAY_NO_PROGRESS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("spillway %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

type timing struct {
	Setup    float64 `json:"setup_ms"`
	Boot     float64 `json:"boot_ms"`
	Cmd      float64 `json:"cmd_ms"`
	Stream   float64 `json:"stream_ms"`
	Poweroff float64 `json:"poweroff_ms"`
	Apply    float64 `json:"apply_ms"`
	Total    float64 `json:"total_ms"`
	Disk     float64 `json:"disk_ms"`
	Init     float64 `json:"guest_init_s"`
	Ready    float64 `json:"guest_ready_s"`
	QEMU     int64   `json:"qemu_maxrss_kib"`
	CPU      float64 `json:"qemu_cpu_ms"`
	Vfsd     int64   `json:"virtiofsd_maxrss_kib"`
	Bytes    int64   `json:"stream_bytes"`
}

func (b *bench) read() []timing {
	f, err := os.Open(b.timings)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []timing
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var t timing
		if json.Unmarshal(sc.Bytes(), &t) == nil {
			out = append(out, t)
		}
	}
	return out
}

// row prints the medians of the runs recorded since the last row; walls
// are the command's wall times (the recorded totals when nil).
func (b *bench) row(name string, walls []float64) {
	ts := b.read()
	col := func(f func(timing) float64) string {
		var v []float64
		for _, t := range ts {
			v = append(v, f(t))
		}
		return stat(v)
	}
	if walls == nil {
		walls = []float64{}
		for _, t := range ts {
			walls = append(walls, t.Total/1000)
		}
	}
	fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, stat(walls),
		col(func(t timing) float64 { return t.Setup / 1000 }), col(func(t timing) float64 { return t.Boot / 1000 }),
		col(func(t timing) float64 { return t.Init }), col(func(t timing) float64 { return t.Ready - t.Init }),
		col(func(t timing) float64 { return t.Cmd / 1000 }), col(func(t timing) float64 { return t.Poweroff / 1000 }),
		col(func(t timing) float64 { return t.Apply / 1000 }), col(func(t timing) float64 { return t.Disk / 1000 }),
		col(func(t timing) float64 { return t.CPU / 1000 }),
		col(func(t timing) float64 { return float64(t.QEMU) / 1024 }), col(func(t timing) float64 { return float64(t.Vfsd) / 1024 }))
}

func stat(v []float64) string {
	if len(v) == 0 {
		return "–"
	}
	sort.Float64s(v)
	if len(v) == 1 {
		return fmt.Sprintf("%.2f", v[0])
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", v[len(v)/2], v[0], v[len(v)-1])
}
