package sparse

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// content returns n bytes of runs of zeros and of data, of random lengths
// around the block size, so runs start and end on and off boundaries.
func content(rng *rand.Rand, n int) []byte {
	b := make([]byte, 0, n)
	for len(b) < n {
		run := rng.IntN(3 * BlockSize)
		if rng.IntN(2) == 0 {
			b = append(b, make([]byte, run)...)
			continue
		}
		for range run {
			b = append(b, byte(1+rng.IntN(255)))
		}
	}
	return b[:n]
}

// TestWriterKeepsContent writes random contents in random pieces, to an
// *os.File and to a bare descriptor: the file reads back the same bytes,
// of the same size, trailing zeros included.
func TestWriterKeepsContent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dir := t.TempDir()
	for i := range 200 {
		want := content(rng, rng.IntN(8*BlockSize))
		if i%3 == 0 {
			want = append(want, make([]byte, rng.IntN(2*BlockSize))...) // a trailing hole
		}
		p := filepath.Join(dir, "f")
		os.Remove(p)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		var dst File = f
		if i%2 == 1 {
			dst = FD(f.Fd())
		}
		w := NewWriter(dst)
		for rest := want; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(3*BlockSize))
			if n, err := w.Write(rest[:k]); err != nil || n != k {
				t.Fatalf("Write: %d, %v", n, err)
			}
			rest = rest[k:]
		}
		if err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d: read back %d bytes, wrote %d: content differs", i, len(got), len(want))
		}
		if w.Size() != int64(len(want)) {
			t.Fatalf("Size %d, want %d", w.Size(), len(want))
		}
	}
}

// TestWriterLeavesHoles copies a 1 GiB file of a hole and two bytes of
// data: it takes a few blocks on disk, not a gibibyte.
func TestWriterLeavesHoles(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 1 << 30
	src := io.MultiReader(bytes.NewReader([]byte{'a'}), io.LimitReader(zeros{}, size-2), bytes.NewReader([]byte{'z'}))
	w := NewWriter(f)
	if n, err := io.Copy(w, src); err != nil || n != size {
		t.Fatalf("copy: %d, %v", n, err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size {
		t.Fatalf("size %d, want %d", st.Size, size)
	}
	if used := st.Blocks * 512; used > 64<<10 {
		t.Fatalf("a 1 GiB file of two bytes of data takes %d bytes on disk", used)
	}
	if w.Data() != 2 {
		t.Fatalf("Data() = %d, want the two bytes written", w.Data())
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, size-1); err != nil || last[0] != 'z' {
		t.Fatalf("last byte %q, %v", last, err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
