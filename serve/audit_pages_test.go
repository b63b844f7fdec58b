package serve

import (
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/spillway/spillway/persist"
)

// TestAuditPages: the audit log's pages, followed by their "next page"
// links, show every entry once, in order; only later pages link back to
// the first; the whole log and one sandbox's alike.
func TestAuditPages(t *testing.T) {
	w := newWorld(t, 0)
	defer func(n int) { auditPageSize = n }(auditPageSize)
	auditPageSize = 3
	c := w.client().login()
	row := regexp.MustCompile(`<tr><td>([0-9]+)</td>`)
	for _, sandbox := range []string{"", "docs"} {
		var want []uint64
		w.withEnv(func(e *persist.Env) {
			if err := e.ForEachEvent(t.Context(), sandbox, func(ev *persist.Event) error { want = append(want, ev.Seq); return nil }); err != nil {
				t.Fatal(err)
			}
		})
		if len(want) <= 2*auditPageSize {
			t.Fatalf("sandbox %q: %d entries, want more than two pages", sandbox, len(want))
		}
		var got []uint64
		c.eachPage("/audit?sandbox="+sandbox, len(want), func(n int, body string) {
			for _, m := range row.FindAllStringSubmatch(body, -1) {
				seq, _ := strconv.ParseUint(m[1], 10, 64)
				got = append(got, seq)
			}
			if first := regexp.MustCompile(`>first page</a>`).MatchString(body); first != (n > 0) {
				t.Errorf("sandbox %q, page %d: a link to the first page: %v", sandbox, n, first)
			}
		})
		if !slices.Equal(got, want) {
			t.Errorf("sandbox %q: the pages show %v, the log holds %v", sandbox, got, want)
		}
	}
}
