// Command bench measures Spillway's open, close and listings against their baselines and prints medians and ratios (go run ./bench [--quick] [--out FILE]).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// config sizes one run.
type config struct {
	Name string
	Reps int // repetitions of the timed scenarios

	DocN        [2]int // image sizes of docsession: small, large
	Docs        int    // documents in the image
	DocsChanged int    // documents a session modifies
	DocBytes    int    // their total new size
	TmpFiles    int    // temporary files created and deleted
	Elsewhere   int    // other files modified

	Close100N [2]int // image sizes of the issue-2 scenario
	Close100  int    // changes of that session

	NativeN    int // image size of the native run
	NativeReps int

	DiscardFiles int // small files a session creates and close discards
	RefuseFiles  int // small files a session creates and close refuses (quota)
	PersistFiles int // files a session creates and close persists
	PersistReps  int

	Records [2]int // records in the store for review ls and persisted ls
	Page    int    // rows of a first page

	ScaleP       [2]int // persisted-scale: files persisted, small and large
	ScaleReps    int    // its interleaved runs
	HistH        [2]int // history: records of history, small and large
	HistPaths    int    // the paths each session of that history changes
	HistReps     int    // its interleaved runs
	DiskFiles    int    // disk: files persisted
	NoopSessions int    // disk: sessions that change nothing
}

var (
	fullConfig = config{
		Name: "full", Reps: 5,
		DocN: [2]int{10000, 200000}, Docs: 400, DocsChanged: 50, DocBytes: 5 << 20, TmpFiles: 10000, Elsewhere: 1000,
		Close100N: [2]int{1000, 50000}, Close100: 100,
		NativeN: 10000, NativeReps: 2,
		DiscardFiles: 1000000, RefuseFiles: 1000000,
		PersistFiles: 10000, PersistReps: 3,
		Records: [2]int{10000, 1000000}, Page: 50,
		ScaleP: [2]int{1000, 100000}, ScaleReps: 7,
		HistH: [2]int{10000, 1000000}, HistPaths: 1000, HistReps: 7,
		DiskFiles: 10000, NoopSessions: 10,
	}
	quickConfig = config{
		Name: "quick", Reps: 2,
		DocN: [2]int{1000, 5000}, Docs: 60, DocsChanged: 20, DocBytes: 2 << 20, TmpFiles: 1000, Elsewhere: 200,
		Close100N: [2]int{1000, 5000}, Close100: 100,
		NativeN: 1000, NativeReps: 1,
		DiscardFiles: 20000, RefuseFiles: 20000,
		PersistFiles: 500, PersistReps: 1,
		Records: [2]int{1000, 20000}, Page: 50,
		ScaleP: [2]int{100, 1000}, ScaleReps: 3,
		HistH: [2]int{1000, 5000}, HistPaths: 100, HistReps: 3,
		DiskFiles: 200, NoopSessions: 10,
	}
	tinyConfig = config{
		Name: "tiny", Reps: 1,
		DocN: [2]int{200, 600}, Docs: 20, DocsChanged: 5, DocBytes: 256 << 10, TmpFiles: 100, Elsewhere: 20,
		Close100N: [2]int{200, 600}, Close100: 30,
		NativeN: 200, NativeReps: 1,
		DiscardFiles: 500, RefuseFiles: 500,
		PersistFiles: 50, PersistReps: 1,
		Records: [2]int{100, 500}, Page: 20,
		ScaleP: [2]int{20, 100}, ScaleReps: 1,
		HistH: [2]int{100, 500}, HistPaths: 20, HistReps: 1,
		DiskFiles: 50, NoopSessions: 3,
	}
)

// only names the one scenario to run ("" runs them all).
var only string

func main() {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	quick := flag.Bool("quick", false, "a CI smoke run with small sizes (under 2 minutes)")
	out := flag.String("out", "", "also write the report to `FILE`")
	dir := flag.String("dir", "/var/tmp", "where to build the data (`DIR` on ext4, xfs, btrfs or tmpfs)")
	flag.StringVar(&only, "only", "", "run only the scenario `NAME` (docsession, close100, native, discard, refuse, persist, records, migrate, export, persisted-scale, history, disk, fleet-opens, fleet-takeover, fleet-closes, fleet-roam, fleet-queue, fleet-ceiling-go; fleet: all fleet-*, which only run when named)")
	flag.Parse()
	cfg := fullConfig
	if *quick {
		cfg = quickConfig
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var w io.Writer = os.Stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}
	if err := run(ctx, cfg, *dir, w, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run builds the data under a fresh directory in parent, runs every
// scenario, prints the report to w and progress to logw, and removes what it
// made. Timings never make it fail; errors do.
func run(ctx context.Context, cfg config, parent string, w, logw io.Writer) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the benchmark mounts overlay filesystems")
	}
	work, err := os.MkdirTemp(parent, "spillway-bench-")
	if err != nil {
		return err
	}
	b := &bench{cfg: cfg, work: work, log: logw, start: time.Now()}
	if os.Getenv("SPILLWAY_BENCH_KEEP") != "" {
		// To profile a command on the data afterwards; remove it by hand
		// (unmount what is mounted under it first).
		defer b.logf("SPILLWAY_BENCH_KEEP: data kept in %s", work)
	} else {
		defer cleanupWork(work)
		defer func() {
			for _, d := range b.cleanup {
				os.RemoveAll(d)
			}
		}()
	}
	b.logf("mode %s, data in %s", cfg.Name, work)
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"docsession", b.docsession}, {"close100", b.close100}, {"native", b.native}, {"discard", b.discard},
		{"refuse", b.refuse}, {"persist", b.persistMany}, {"records", b.records}, {"migrate", b.migrate}, {"export", b.export},
		{"persisted-scale", b.persistedScale}, {"history", b.history}, {"disk", b.disk},
		{"fleet-opens", b.fleetOpens}, {"fleet-takeover", b.fleetTakeover}, {"fleet-closes", b.fleetCloses},
		{"fleet-roam", b.fleetRoam}, {"fleet-queue", b.fleetQueue}, {"fleet-ceiling-go", b.fleetCeilingGo},
	}
	defer stopFleetPG()
	for _, step := range steps {
		fleet := strings.HasPrefix(step.name, "fleet-")
		switch {
		case only == "" && fleet:
			// Minutes even when quick, and a PostgreSQL cluster: asked for
			// by name only (--only fleet); TestFleetTiny runs them tiny.
			continue
		case only != "" && step.name != only && !(only == "fleet" && fleet):
			continue
		}
		if err := step.fn(ctx); err != nil {
			return err
		}
	}
	b.report(w)
	return nil
}
