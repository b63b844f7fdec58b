package main

import (
	"bytes"
	"errors"
	"testing"

	"github.com/containerd/log"
)

// TestLibraryLogsUseSpillwayFormat checks that containerd's log lines reach
// stderr as "spillway:" lines, warnings and errors only.
func TestLibraryLogsUseSpillwayFormat(t *testing.T) {
	var errOut bytes.Buffer
	quietLibraries(&term{out: new(bytes.Buffer), err: &errOut})
	log.L.Info("chatty detail")
	log.L.Debug("more detail")
	log.L.WithError(errors.New("device busy")).Warn("failed to remove mount.")
	want := "spillway: failed to remove mount: device busy\n"
	if got := errOut.String(); got != want {
		t.Fatalf("stderr = %q, want %q", got, want)
	}
}
