package proto

import (
	"fmt"
	"testing"
)

// TestInitMarker: the marker setup looks for in the init's binary says
// this Version.
func TestInitMarker(t *testing.T) {
	if want := fmt.Sprintf("spillway-vminit protocol %d", Version); InitMarker != want {
		t.Fatalf("InitMarker %q, want %q: bump it with Version", InitMarker, want)
	}
}
