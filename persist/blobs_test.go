package persist

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
