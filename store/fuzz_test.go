package store

import (
	"bytes"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
)

// FuzzDecodeRecord checks that any stored bytes decode to a record or a clear
// error, never a panic, and that decoded records re-encode stably.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range []*Record{
		{},
		{ID: 1, Sandbox: "a", Session: 1, Path: "/f", Kind: change.KindAdd, Type: "file", Size: 3, Mode: 0o644, Status: change.StatusPending},
		{ID: 1 << 60, Sandbox: "x\n\x1b[2J", Path: "/bad\xff\xfe\n", Link: "../../etc", Digest: "sha256:00", Exception: "ex10",
			Status: change.StatusRefused, Reason: "symlink", Mtime: time.Date(2024, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)), Purged: true},
	} {
		b, err := encode(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{encVersion})
	f.Add([]byte{2, 0, 0})
	f.Add([]byte{encVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			if r != nil {
				t.Fatal("record with error")
			}
			return
		}
		b1, err := encode(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := decodeRecord(b1)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		b2, err := encode(r2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatal("unstable encoding")
		}
	})
}

func TestDecodeErrorNamesKind(t *testing.T) {
	for _, b := range [][]byte{nil, {9}, {encVersion, 1, 2, 3}} {
		if _, err := decodeRecord(b); err == nil || !bytes.Contains([]byte(err.Error()), []byte("cannot decode record")) {
			t.Errorf("%x: %v", b, err)
		}
	}
}
