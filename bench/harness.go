package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/snapshot"
)

// bench holds one run's configuration and results.
type bench struct {
	cfg   config
	work  string
	log   io.Writer
	start time.Time

	rows   []row
	ratios []ratio
	notes  []string

	overlayDoc10k *docResult
	cleanup       []string // more directories to remove at the end // docsession at the small size, for the native ratios
}

// row is one measured figure: the median of its samples.
type row struct {
	Group, Name string
	Samples     []time.Duration
	Value       string // set for figures that are not durations
}

// ratio compares two figures of the same run.
type ratio struct {
	Name   string
	Value  float64
	Target float64 // 0: informative only
	Unit   string  // "" for a plain ratio
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// add records samples under a name and returns their median.
func (b *bench) add(group, name string, samples []time.Duration) time.Duration {
	b.rows = append(b.rows, row{Group: group, Name: name, Samples: samples})
	return median(samples)
}

// addValue records a figure that is not a duration.
func (b *bench) addValue(group, name, value string) {
	b.rows = append(b.rows, row{Group: group, Name: name, Value: value})
}

func (b *bench) ratio(name string, num, den time.Duration, target float64) {
	v := 0.0
	if den > 0 {
		v = float64(num) / float64(den)
	}
	b.ratios = append(b.ratios, ratio{Name: name, Value: v, Target: target})
}

// ratioValue records a ratio that is not between two durations.
func (b *bench) ratioValue(name string, v, target float64) {
	b.ratios = append(b.ratios, ratio{Name: name, Value: v, Target: target})
}

// note records a finding once.
func (b *bench) note(s string) {
	if !slices.Contains(b.notes, s) {
		b.notes = append(b.notes, s)
	}
}

// median returns the median of s.
func median(s []time.Duration) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}

// timed runs fn and returns how long it took.
func timed(fn func() error) (time.Duration, error) {
	t0 := time.Now()
	err := fn()
	return time.Since(t0), err
}

// report prints the table of figures and the table of ratios.
func (b *bench) report(w io.Writer) {
	fmt.Fprintf(w, "spillway bench, mode %s, total %s\n\n", b.cfg.Name, time.Since(b.start).Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tFIGURE\tMEDIAN\tRUNS\tMIN\tMAX")
	for _, r := range b.rows {
		if r.Value != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t1\t\t\n", r.Group, r.Name, r.Value)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.Group, r.Name, fmtDur(median(r.Samples)), len(r.Samples),
			fmtDur(slices.Min(r.Samples)), fmtDur(slices.Max(r.Samples)))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RATIO\tVALUE\tTARGET\tMET")
	for _, q := range b.ratios {
		target, met := "-", "-"
		if q.Target > 0 {
			target = fmt.Sprintf("<= %g%s", q.Target, q.Unit)
			met = "yes"
			if q.Value > q.Target {
				met = "NO"
			}
		}
		val := fmt.Sprintf("%.2f", q.Value)
		switch q.Unit {
		case "":
		case " s":
			val = fmt.Sprintf("%.2f%s", q.Value, q.Unit)
		default:
			val = fmt.Sprintf("%.0f%s", q.Value, q.Unit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", q.Name, val, target, met)
	}
	tw.Flush()
	for _, n := range b.notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
}

// openEnv opens a state directory as one spillway command would.
func openEnv(ctx context.Context, root, kind string) (*persist.Env, error) {
	return persist.OpenEnv(ctx, persist.Options{Root: root, Snapshotter: kind, LockTimeout: 10 * time.Second})
}

// sh runs a command (no shell) and returns its error with its output.
func sh(dir string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// settle writes back dirty pages so that every timed step starts alike.
func settle() { unix.Sync() }

// cleanupWork unmounts and removes the run's directory.
func cleanupWork(work string) {
	if ms, err := snapshot.MountsUnder(work); err == nil {
		for i := len(ms) - 1; i >= 0; i-- {
			snapshot.Unmount(ms[i])
		}
	}
	os.RemoveAll(work)
}

// importImage builds spec's image, imports it into env as name and removes
// the generated source.
func (b *bench) importImage(ctx context.Context, e *persist.Env, name string, spec imageSpec) (*genImage, error) {
	src := filepath.Join(b.srcDir(), "src-"+name)
	g, err := buildImage(src, spec)
	if err != nil {
		return nil, fmt.Errorf("build image %s: %w", name, err)
	}
	d, err := timed(func() error {
		_, err := e.ImportImage(ctx, name, snapshot.Source{Dir: src})
		return err
	})
	if err != nil {
		return nil, err
	}
	b.logf("image %s: %d generated files, %d MiB, imported in %s", name, spec.Files, g.Bytes>>20, fmtDur(d))
	return g, os.RemoveAll(src)
}

// srcDir is where generated image sources go before import: tmpfs when
// there is one (the source is input, not measured, and removing it from a
// disk mounted with discard costs minutes), else the work directory.
func (b *bench) srcDir() string {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC {
		if d, err := os.MkdirTemp("/dev/shm", "spillway-bench-src-"); err == nil {
			b.cleanup = append(b.cleanup, d)
			return d
		}
	}
	return b.work
}
