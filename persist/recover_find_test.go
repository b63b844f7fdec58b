package persist

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spillway/spillway/exceptions"
)

// TestFindRecoverablesAsOneByOne: finding many paths in one read of the
// area's manifests gives, for each path, what a pass over the area for it
// alone gives (oneByOne, the way before): the
// newest session holding it or anything beneath it, the path's entry and
// the entries beneath it; a path given inside another gets its own.
func TestFindRecoverablesAsOneByOne(t *testing.T) {
	f := newFixture(t, "")
	// Files refused (too large), kept for a week whatever follows; the
	// directories persist.
	f.except(func(x *exceptions.Exception) { x.Limits.MaxFileSize = 2 }, "/data/**")
	m := f.open()
	for _, p := range []string{"/data/a/x", "/data/a/y", "/data/b"} {
		write(t, m, p, "one", 0o644)
	}
	f.close()
	m = f.open()
	for _, p := range []string{"/data/a/x", "/data/c/d"} {
		write(t, m, p, "two", 0o644)
	}
	f.close()

	paths := []string{"/data/a", "/data/a/x", "/data/a/y", "/data/b", "/data/c", "/data/c/d", "/data"}
	many, err := f.e.findRecoverables(f.ctx, "docs", 0, paths)
	if err != nil {
		t.Fatal(err)
	}
	describe := func(r *recoverable) string {
		var b strings.Builder
		fmt.Fprintf(&b, "session %d entry %q;", r.rs.n, r.entry.Path)
		for _, x := range r.beneath {
			fmt.Fprintf(&b, " %s@%d", x.Path, x.Session)
		}
		return b.String()
	}
	for i, p := range paths {
		one := oneByOne(t, f, p)
		if got, want := describe(many[i]), describe(one); got != want {
			t.Errorf("%s: found with the others %s, alone %s", p, got, want)
		}
	}
	// The expectations themselves, so that both cannot be wrong alike.
	for p, want := range map[string]string{
		"/data/a/y": `session 1 entry "/data/a/y";`,
		"/data/a/x": `session 2 entry "/data/a/x";`,
		"/data/c":   `session 2 entry ""; /data/c/d@2`,
	} {
		if got := describe(many[indexOf(paths, p)]); got != want {
			t.Errorf("%s: %s, want %s", p, got, want)
		}
	}
	if got, want := describe(many[indexOf(paths, "/data")]), `session 2 entry ""; /data/a/x@2 /data/c/d@2`; got != want {
		t.Errorf("/data: %s, want %s", got, want)
	}

	_, err = f.e.findRecoverables(f.ctx, "docs", 0, []string{"/data/a", "/data/nothing", "/data/none"})
	if err == nil || !strings.Contains(err.Error(), "/data/nothing is not in the recovery area of docs") {
		t.Fatalf("a path not kept: %v, want the first one named", err)
	}
	_, err = f.e.findRecoverables(f.ctx, "docs", 1, []string{"/data/a/x", "/data/c"})
	if err == nil || !strings.Contains(err.Error(), "/data/c is not in the recovery area of docs, session 1") {
		t.Fatalf("a path not in the session asked for: %v, want it named with the session", err)
	}
}

// oneByOne finds p as findRecoverable did before it read the area once
// for all paths: a pass over every entry, keeping p and those beneath it
// by prefix, the newest session's.
func oneByOne(t *testing.T, f *fixture, p string) *recoverable {
	t.Helper()
	byS := map[uint64]*recoverable{}
	var newest uint64
	prefix := strings.TrimSuffix(p, "/") + "/"
	if err := f.e.eachRecoverable(f.ctx, "docs", 0, func(rs *recoverySession, x RecoverEntry) error {
		if x.Path != p && !strings.HasPrefix(x.Path, prefix) {
			return nil
		}
		r := byS[rs.n]
		if r == nil {
			r = &recoverable{rs: rs}
			byS[rs.n] = r
		}
		if x.Path == p {
			r.entry = x
		} else {
			r.beneath = append(r.beneath, x)
		}
		newest = max(newest, rs.n)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if byS[newest] == nil {
		t.Fatalf("%s: not in the recovery area", p)
	}
	return byS[newest]
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	panic(v)
}
