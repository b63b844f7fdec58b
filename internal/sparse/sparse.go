// Package sparse writes files whose all-zero blocks are left as holes.
package sparse

import (
	"bytes"
	"io"
)

// BlockSize is the unit, aligned on the file, that is written or skipped.
const BlockSize = 4096

var zeroBlock [BlockSize]byte

// File is what a Writer writes to: an *os.File, or FD for a bare
// descriptor.
type File interface {
	io.WriterAt
	Truncate(size int64) error
}

// Writer writes to a new, empty file from offset 0 on, leaving every
// block-aligned run of zero bytes as a hole instead of writing it. A file
// of a 20 GiB hole and a few bytes of data takes a few blocks on disk, as
// the sandbox's file it was read from did. Call Finish at the end: it
// sets the size, which a trailing hole leaves short.
type Writer struct {
	f    File
	off  int64
	data int64 // bytes written as data, not left as holes
}

// NewWriter returns a Writer to f, which must be empty.
func NewWriter(f File) *Writer { return &Writer{f: f} }

// Write writes the blocks of p that are not all zero at the Writer's
// offset, and moves it past p.
func (w *Writer) Write(p []byte) (int, error) {
	n := len(p)
	start := -1 // start in p of the run of data being gathered
	at := w.off
	for i := 0; i < len(p); {
		end := i + BlockSize - int((w.off+int64(i))%BlockSize)
		end = min(end, len(p))
		if bytes.Equal(p[i:end], zeroBlock[:end-i]) {
			if start >= 0 {
				if _, err := w.f.WriteAt(p[start:i], at); err != nil {
					return start, err
				}
				w.data += int64(i - start)
				start = -1
			}
		} else if start < 0 {
			start, at = i, w.off+int64(i)
		}
		i = end
	}
	if start >= 0 {
		if _, err := w.f.WriteAt(p[start:], at); err != nil {
			return start, err
		}
		w.data += int64(len(p) - start)
	}
	w.off += int64(n)
	return n, nil
}

// Finish sets the file's size to what was written, trailing holes
// included.
func (w *Writer) Finish() error { return w.f.Truncate(w.off) }

// Size is the number of bytes written so far, holes included.
func (w *Writer) Size() int64 { return w.off }

// Data is the number of bytes written as data so far: what the file takes
// on disk, give or take a block.
func (w *Writer) Data() int64 { return w.data }
