package persist

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/sparse"
	"github.com/spillway/spillway/store"
)

// blobStage holds blobs written into a store's tmp/ and checked against
// their digests, none of them in place until commit: fleet import stages
// every blob of a source first, so that a source with one bad blob leaves
// nothing in the shared blob directory.
type blobStage struct {
	b      *Blobs
	staged []stagedBlob
	bytes  int64 // staged so far
}

type stagedBlob struct{ tmp, final string }

// stage writes r into a temporary file and checks that it is exactly
// size bytes hashing to digest; src names r in errors.
func (s *blobStage) stage(r io.Reader, digest string, size int64, src string) error {
	final, err := s.b.Path(digest)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(final); err == nil && !fi.Mode().IsRegular() {
		return errclass.Errorf(errdefs.ErrFailedPrecondition, "blob %s: %s is not a regular file (%s) in the blob directory: spillway did not put it there; remove it, then run the command again", digest, final, fi.Mode().Type())
	}
	if free, err := store.FreeBytes(s.b.dir); err == nil && free-s.bytes-size < store.Reserve {
		return fmt.Errorf("%w: blob %s (%s) does not fit in the blob directory %s (%d MiB free, %d MiB staged)", store.ErrNoSpace, digest, plural(size, "byte"), s.b.dir, free>>20, s.bytes>>20)
	}
	tmp, err := os.CreateTemp(filepath.Join(s.b.dir, "tmp"), blobTempPrefix)
	if err != nil {
		return err
	}
	s.staged = append(s.staged, stagedBlob{tmp: tmp.Name(), final: final})
	h := sha256.New()
	sw := sparse.NewWriter(tmp)
	n, err := io.Copy(io.MultiWriter(sw, h), io.LimitReader(r, size+1))
	if err == nil {
		err = sw.Finish()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("blob %s: copy %s: %w", digest, src, err)
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	switch {
	case n > size:
		return fmt.Errorf("blob %s: %s is longer than the %s its records say: %w", digest, src, plural(size, "byte"), ErrCorrupt)
	case n < size:
		return fmt.Errorf("blob %s: %s is %s, its records say %d: %w", digest, src, plural(n, "byte"), size, ErrCorrupt)
	case got != digest:
		return fmt.Errorf("blob %s: %s hashes to %s: %w", digest, src, got, ErrCorrupt)
	}
	s.bytes += size
	return nil
}

// commit moves every staged blob into place (a blob in place already, of
// the same content or a corrupt one, is replaced).
func (s *blobStage) commit() error {
	for len(s.staged) > 0 {
		sb := s.staged[0]
		if err := os.Rename(sb.tmp, sb.final); err != nil {
			return err
		}
		s.staged = s.staged[1:]
	}
	return nil
}

// cleanup removes what was staged and not committed.
func (s *blobStage) cleanup() {
	for _, sb := range s.staged {
		os.Remove(sb.tmp)
	}
	s.staged = nil
}
