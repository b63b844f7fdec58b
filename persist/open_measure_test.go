package persist

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/snapshot"
)

// TestOpenAfterOneFileChange measures the next open after a one-file change
// with P files of 4 KiB persisted, for each P of SPILLWAY_MEASURE_OPEN
// (comma-separated; default "50,500", a quick run), over
// SPILLWAY_MEASURE_RUNS opens (default 3), and logs the median. It checks
// that every open shows the changed file. docs/design.md gives the command
// and the figures.
func TestOpenAfterOneFileChange(t *testing.T) {
	sizes := os.Getenv("SPILLWAY_MEASURE_OPEN")
	if sizes == "" {
		sizes = "50,500"
	}
	runs := int(propEnvInt(t, "SPILLWAY_MEASURE_RUNS", 3))
	for _, s := range strings.Split(sizes, ",") {
		p, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("SPILLWAY_MEASURE_OPEN=%q: %v", sizes, err)
		}
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			f := newFixture(t, snapshot.KindOverlay)
			f.except(func(x *exceptions.Exception) { x.Review = change.ReviewAfter }, "/home/user/Documents/**")
			root := f.open()
			buf := make([]byte, 4096)
			for i := range p {
				copy(buf, fmt.Sprintf("file %d\n", i))
				full := filepath.Join(root, "home/user/Documents", fmt.Sprintf("d%03d", i/500), fmt.Sprintf("f%05d.txt", i))
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(full, buf, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f.close()
			f.open() // the layer of the P files
			var times []time.Duration
			for r := range runs {
				content := fmt.Sprintf("edit %d\n", r)
				write(t, root, "/home/user/Documents/d000/f00000.txt", content, 0o644)
				f.close()
				start := time.Now()
				root = f.open()
				times = append(times, time.Since(start))
				if b, err := os.ReadFile(filepath.Join(root, "home/user/Documents/d000/f00000.txt")); err != nil || string(b) != content {
					t.Fatalf("after the open: %q %v, want %q", b, err, content)
				}
			}
			f.close()
			slices.Sort(times)
			t.Logf("P=%d: next open after a one-file change: median %v of %d (%v)", p, times[len(times)/2].Round(time.Millisecond), runs, times)
		})
	}
}
