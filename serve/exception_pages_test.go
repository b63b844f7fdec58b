package serve

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"testing"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/persist"
)

// TestExceptionPages: the exceptions page shows its rules a page at a
// time; followed by their "next page" links, the pages show every rule
// once, in order, with or without the revoked ones; a bad after= is a 400.
func TestExceptionPages(t *testing.T) {
	w := newWorld(t, 0)
	defer func(n int) { exceptionsPageSize = n }(exceptionsPageSize)
	exceptionsPageSize = 2
	w.withEnv(func(e *persist.Env) {
		for _, p := range []string{"/home/user/a/**", "/home/user/b/**", "/home/user/c/**"} {
			x := &exceptions.Exception{Sandbox: "docs", Patterns: []string{p}, Reason: "pages"}
			if _, err := e.AddException(context.Background(), x); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.RevokeException(context.Background(), w.ex, "gone", false); err != nil {
			t.Fatal(err)
		}
	})
	c := w.client().login()
	row := regexp.MustCompile(`<tr><td>(ex[0-9]+)[ <]`)
	for _, all := range []bool{false, true} {
		var want []string
		w.withEnv(func(e *persist.Env) {
			xs, err := e.Exceptions("", all)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range xs {
				want = append(want, x.ID)
			}
		})
		if len(want) <= exceptionsPageSize {
			t.Fatalf("all=%v: %d rules, want more than a page", all, len(want))
		}
		var got []string
		page := "/exceptions"
		if all {
			page += "?all=1"
		}
		c.eachPage(page, len(want), func(n int, body string) {
			rows := row.FindAllStringSubmatch(body, -1)
			if len(rows) > exceptionsPageSize {
				t.Errorf("all=%v, page %d: %d rows", all, n, len(rows))
			}
			for _, m := range rows {
				got = append(got, m[1])
			}
		})
		if !slices.Equal(got, want) {
			t.Errorf("all=%v: the pages show %v, the store holds %v", all, got, want)
		}
	}
	for _, bad := range []string{"x", "ex0", "ex01", "ex-1"} {
		if resp := c.get("/exceptions?after=" + bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("after=%s: status %d, want 400", bad, resp.StatusCode)
		}
	}
}
