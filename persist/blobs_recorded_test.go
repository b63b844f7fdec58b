package persist

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// TestBlobsDirRecordedOnceAccepted: a new root records its blob directory
// once the directory is accepted (a first command naming one that holds
// someone else's files records nothing, and the corrected one works);
// later commands naming another, or none, are refused, exit 2. A root
// made before the record (no file, not new) records nothing on a regular
// command, and records at its next fleet init.
func TestBlobsDirRecordedOnceAccepted(t *testing.T) {
	base := t.TempDir()
	wrong, right := filepath.Join(base, "share"), filepath.Join(base, "blobs")
	must(t, os.MkdirAll(wrong, 0o700))
	must(t, os.WriteFile(filepath.Join(wrong, "someone-elses.txt"), []byte("x"), 0o600))
	root := filepath.Join(base, "state")
	open := func(blobs string) error {
		e, err := OpenEnv(context.Background(), Options{Root: root, LockTimeout: 5 * time.Second, Blobs: blobs, LedgerOnly: true})
		if err == nil {
			e.Close()
		}
		return err
	}
	recorded := func() string {
		b, _ := os.ReadFile(filepath.Join(root, blobsDirFile))
		return string(b)
	}
	if err := open("dir://" + wrong); err == nil {
		t.Fatal("a directory holding other files was accepted")
	}
	if got := recorded(); got != "" {
		t.Fatalf("a refused directory was recorded: %q", got)
	}
	if err := open("dir://" + right); err != nil {
		t.Fatalf("the corrected command: %v", err)
	}
	if got := recorded(); got != right+"\n" {
		t.Fatalf("recorded %q, want %s", got, right)
	}
	for _, blobs := range []string{"", "dir://" + wrong} {
		if err := open(blobs); !errdefs.IsInvalidArgument(err) {
			t.Errorf("--blobs %q on a root recorded with %s: %v, want refused as bad input", blobs, right, err)
		}
	}

	// a root from before the record: nothing guessed, until fleet init
	must(t, os.Remove(filepath.Join(root, blobsDirFile)))
	if err := open(""); err != nil {
		t.Fatalf("an older root without a record: %v", err)
	}
	if got := recorded(); got != "" {
		t.Fatalf("an older root recorded %q at a regular command", got)
	}
	e, err := OpenEnv(context.Background(), Options{Root: root, LockTimeout: 5 * time.Second, Blobs: "dir://" + right, LedgerOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.FleetInit()
	e.Close()
	var in *InputError
	if !errors.As(err, &in) || in.Input != "store" {
		t.Fatalf("fleet init on badger: %v, want refused", err)
	}
	if got := recorded(); got != "" {
		t.Fatalf("a refused fleet init recorded %q", got)
	}
}
