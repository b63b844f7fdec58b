package persist

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/store"
)

// ErrCorrupt says a blob's bytes do not hash to its digest (or are not its
// size): the content store lost data. It matches errdefs.ErrDataLoss.
var ErrCorrupt = fmt.Errorf("content does not match its digest: %w", errdefs.ErrDataLoss)

// verified reads a blob and checks it against its digest and size while the
// bytes go by: past the size, or at the end when the hash differs, Read
// returns ErrCorrupt instead of more bytes or io.EOF. A reader that stops
// early has checked nothing.
type verified struct {
	f      *os.File
	h      hash.Hash
	digest string
	size   int64
	n      int64
	err    error
}

// OpenVerified opens the blob of digest for a reader that checks it.
func (b *Blobs) OpenVerified(digest string, size int64) (io.ReadCloser, error) {
	if size < 0 {
		// Any host of a shared ledger can write a record: a negative
		// size is one spillway never writes (Read would slice with it).
		return nil, fmt.Errorf("blob %s: a record gives it the size %d: %w", digest, size, ErrCorrupt)
	}
	f, err := b.Open(digest)
	if err != nil {
		return nil, err
	}
	return &verified{f: f, h: sha256.New(), digest: digest, size: size}, nil
}

func (v *verified) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	// Read at most one byte past the size: enough to see that it is longer.
	// (v.size+1 would overflow for a record of size math.MaxInt64, which
	// any host of a shared ledger can write; 0 <= v.n <= v.size here.)
	if rest := v.size - v.n; int64(len(p)) > rest {
		p = p[:rest+1]
	}
	n, err := v.f.Read(p)
	v.n += int64(n)
	if v.n > v.size {
		// The bytes up to the size go out like any others; then the error.
		n -= int(v.n - v.size)
		v.err = fmt.Errorf("blob %s is longer than %s: %w", v.digest, plural(v.size, "byte"), ErrCorrupt)
		return n, v.err
	}
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.digest || v.n != v.size {
			v.err = fmt.Errorf("blob %s hashes to %s (%s): %w", v.digest, got, plural(v.n, "byte"), ErrCorrupt)
			return n, v.err
		}
		v.err = io.EOF
	}
	return n, err
}

func (v *verified) Close() error { return v.f.Close() }

// OpenRecord opens the content a record kept, checked against its digest
// while it is read; its errors name the record and its path.
func (e *Env) OpenRecord(r *store.Record) (io.ReadCloser, error) {
	if r.Pruned {
		return nil, recordErr(r, ErrPruned)
	}
	if r.Digest == "" {
		return nil, fmt.Errorf("record r%d (%s) is a %s %s: it kept no content", r.ID, escape.Name(r.Path), r.Type, r.Kind)
	}
	rc, err := e.blobs.OpenVerified(r.Digest, r.Size)
	if err != nil {
		return nil, recordErr(r, err)
	}
	return &recordReader{rc: rc, r: r}, nil
}

// recordReader names its record in the errors of the reader it wraps.
type recordReader struct {
	rc io.ReadCloser
	r  *store.Record
}

func (rr *recordReader) Read(p []byte) (int, error) {
	n, err := rr.rc.Read(p)
	if err != nil && err != io.EOF {
		err = recordErr(rr.r, err)
	}
	return n, err
}

func (rr *recordReader) Close() error { return rr.rc.Close() }

// recordErr names a record and its path in err.
func recordErr(r *store.Record, err error) error {
	return fmt.Errorf("record r%d of %s (%s, session %d): %w", r.ID, r.Sandbox, escape.Name(r.Path), r.Session, err)
}
