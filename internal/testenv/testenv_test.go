package testenv

import (
	"fmt"
	"testing"
)

// recorder is a testing.TB that records how a test was ended.
type recorder struct {
	testing.TB
	how string
}

func (r *recorder) Helper() {}

// Fatalf and Skipf end a real test; here the first call is what counts.
func (r *recorder) Fatalf(f string, args ...any) { r.end("fail: " + fmt.Sprintf(f, args...)) }
func (r *recorder) Skipf(f string, args ...any)  { r.end("skip: " + fmt.Sprintf(f, args...)) }

func (r *recorder) end(how string) {
	if r.how == "" {
		r.how = how
	}
}

func TestMissingFailsWhereTheWholeSuiteRuns(t *testing.T) {
	for _, c := range []struct{ ci, all, want string }{
		{"", "", "skip: skipped: qemu is not installed (scripts/test.sh installs it)"},
		{"true", "", "fail: qemu is not installed (scripts/test.sh installs it; the whole suite skips nothing)"},
		{"", "1", "fail: qemu is not installed (scripts/test.sh installs it; the whole suite skips nothing)"},
	} {
		t.Setenv("CI", c.ci)
		t.Setenv("SPILLWAY_TEST_ALL", c.all)
		r := &recorder{TB: t}
		Missing(r, "%s is not installed", "qemu")
		if r.how != c.want {
			t.Errorf("CI=%q ALL=%q: %q, want %q", c.ci, c.all, r.how, c.want)
		}
	}
}
