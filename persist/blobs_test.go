package persist

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBlobsStoreEachContentOnce(t *testing.T) {
	b, err := NewBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3*smallBlob)
	rand.Read(big)
	for _, content := range [][]byte{nil, []byte("small"), big} {
		d1, n1, err := b.Put(bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		d2, n2, err := b.Put(bytes.NewReader(content))
		if err != nil || d1 != d2 || n1 != n2 || n1 != int64(len(content)) {
			t.Fatalf("second put: %s %d %v, first %s %d", d2, n2, err, d1, n1)
		}
		if err := b.Verify(d1); err != nil {
			t.Fatal(err)
		}
	}
	list, _ := b.List()
	if len(list) != 3 {
		t.Fatalf("%d blobs, want 3", len(list))
	}
	tmp, _ := os.ReadDir(filepath.Join(b.dir, "tmp"))
	if len(tmp) != 0 {
		t.Fatalf("temp files left: %v", tmp)
	}
}

// A blob cut short (renamed into place but never synced before a power
// cut) is replaced by the next Put of the same content.
func TestBlobsReplaceTruncatedBlob(t *testing.T) {
	b, _ := NewBlobs(t.TempDir())
	content := strings.Repeat("document ", 100)
	d, _, err := b.Put(strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := b.Path(d)
	if err := os.Truncate(p, 10); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(d); err == nil {
		t.Fatal("Verify accepted a truncated blob")
	}
	if _, _, err := b.Put(strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(d); err != nil {
		t.Fatalf("after a new Put: %v", err)
	}
}

// A Put that finds the content in place renews the blob's modification
// time, small or large: gc's grace period for unreferenced blobs counts
// from the last use, so another host's gc does not take a blob a close is
// about to name because its first write was long ago.
func TestBlobsPutRenewsReusedBlob(t *testing.T) {
	b, err := NewBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{10, smallBlob + 10} {
		content := bytes.Repeat([]byte{'x'}, size)
		d, _, err := b.Put(bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		p, _ := b.Path(d)
		old := time.Now().Add(-72 * time.Hour)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.Put(bytes.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(fi.ModTime()) > time.Hour {
			t.Fatalf("%d bytes: modification time %s after a Put that reused it", size, fi.ModTime())
		}
	}
}

// Other bytes of the same size under a blob's name (planted by whoever
// may write a shared blob directory) are not taken for the content: the
// next Put of the content replaces them, small or large, so that the
// close that made the Put persists what it read, not the planted bytes.
func TestBlobsPutReplacesForgedBlob(t *testing.T) {
	b, err := NewBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{10, smallBlob, smallBlob + 10, 3 * smallBlob} {
		content := make([]byte, size)
		rand.Read(content)
		d, _, err := b.Put(bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		p, _ := b.Path(d)
		forged := bytes.Repeat([]byte{'!'}, size)
		if err := os.WriteFile(p, forged, 0o644); err != nil {
			t.Fatal(err)
		}
		d2, n, err := b.Put(bytes.NewReader(content))
		if err != nil || d2 != d || n != int64(size) {
			t.Fatalf("%d bytes: Put over a forged blob: %s %d %v", size, d2, n, err)
		}
		if err := b.Verify(d); err != nil {
			t.Fatalf("%d bytes: the forged blob was kept: %v", size, err)
		}
	}
	tmp, _ := os.ReadDir(filepath.Join(b.dir, "tmp"))
	if len(tmp) != 0 {
		t.Fatalf("temp files left: %v", tmp)
	}
}
