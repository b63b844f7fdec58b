package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestFleetTiny runs the fleet scenarios with tiny sizes against a
// throwaway PostgreSQL: they must finish (a double open or a fencing
// violation is an error of fleet-opens; a takeover by the spillway command
// that is not refused while h1 lives, or whose late close on h1 is not
// fenced and recoverable, an error of fleet-takeover) and print their
// figures.
func TestFleetTiny(t *testing.T) {
	old := only
	only = "fleet"
	defer func() { only = old }()
	var out, log bytes.Buffer
	if err := run(context.Background(), tinyConfig, t.TempDir(), &out, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	for _, want := range []string{"double opens", "host killed → other host's open granted", "uncontended open on h2", "closes per second", "the stage's writes alone: closes per second", "no stage: closes per second", "commit transaction: p50 / p99", "open on h2 after a close on h1", "review ls first page, store call", "spillway serve: GET /queue (50 rows", "through PgBouncer (session pooling, warm)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
