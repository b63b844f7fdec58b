package persist

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spillway/spillway/internal/pgtest"
)

// fleet init on a PostgreSQL ledger without --blobs warns that other
// hosts will not find the blobs this host's closes write; with --blobs it
// does not.
func TestFleetInitWarnsOfUnsharedBlobs(t *testing.T) {
	url := pgtest.URL(t)
	for _, shared := range []bool{false, true} {
		o := Options{Root: filepath.Join(t.TempDir(), "state"), HostID: "h1", Store: url, LedgerOnly: true}
		if shared {
			o.Blobs = "dir://" + filepath.Join(t.TempDir(), "blobs")
			o.HostID = "h2"
		}
		var warned []string
		o.Warn = func(m string) { warned = append(warned, m) }
		e, err := OpenEnv(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		r, err := e.FleetInit()
		e.Close()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case shared && len(warned) != 0:
			t.Fatalf("with --blobs: warned %q", warned)
		case !shared && (len(warned) != 1 || !strings.Contains(warned[0], "blobs are not shared") ||
			!strings.Contains(warned[0], filepath.Join(o.Root, "blobs")) || !strings.Contains(warned[0], "--blobs dir:///")):
			t.Fatalf("without --blobs (report %+v): warned %q", r, warned)
		}
	}
}
