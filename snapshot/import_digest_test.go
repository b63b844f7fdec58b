package snapshot

import (
	"os"
	"path/filepath"
	"testing"
)

// A sparse file and the same bytes written out digest alike (holes are not
// read, and count as the zeros they read as); a byte changed anywhere,
// or a file one byte longer, digests otherwise.
func TestContentDigestSparse(t *testing.T) {
	dir := t.TempDir()
	const size = 5*digestBlock + 12345
	sparse := filepath.Join(dir, "sparse")
	f, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	at := int64(2*digestBlock + 100)
	if _, err := f.WriteAt([]byte("data in the middle"), at); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dense := make([]byte, size)
	copy(dense[at:], "data in the middle")
	digest := func(content []byte) string {
		p := filepath.Join(dir, "dense")
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		return fileDigest(t, p)
	}
	want := fileDigest(t, sparse)
	if got := digest(dense); got != want {
		t.Fatalf("dense %s, sparse %s", got, want)
	}
	changed := append([]byte(nil), dense...)
	changed[size-1] = 1
	if digest(changed) == want {
		t.Fatal("a changed last byte digests the same")
	}
	if digest(append(dense, 0)) == want {
		t.Fatal("one zero more digests the same")
	}
}

func fileDigest(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	d, err := contentDigest(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	return d
}
