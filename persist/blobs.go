package persist

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Blobs is a content store of files named by their sha256 digest.
type Blobs struct {
	dir string // holds sha256/<hex> and tmp/
}

// NewBlobs returns the content store under dir, creating it if needed.
func NewBlobs(dir string) (*Blobs, error) {
	for _, d := range []string{filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	return &Blobs{dir: dir}, nil
}

// Path is the file of a digest ("sha256:<hex>").
func (b *Blobs) Path(digest string) (string, error) {
	hexPart, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexPart) != 64 {
		return "", fmt.Errorf("bad digest %q", digest)
	}
	if _, err := hex.DecodeString(hexPart); err != nil {
		return "", fmt.Errorf("bad digest %q", digest)
	}
	return filepath.Join(b.dir, "sha256", hexPart), nil
}

// Put copies r into the store and returns its digest and size. The blob is
// durable when Put returns: file fsynced, renamed into place, directory
// fsynced. The same content is stored once.
func (b *Blobs) Put(r io.Reader) (digest string, size int64, err error) {
	tmp, err := os.CreateTemp(filepath.Join(b.dir, "tmp"), "blob-")
	if err != nil {
		return "", 0, err
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(tmp, h), r)
	if err != nil {
		return "", 0, err
	}
	digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	final, _ := b.Path(digest)
	if _, err := os.Stat(final); err == nil {
		return digest, size, nil
	}
	if err := tmp.Sync(); err != nil {
		return "", 0, err
	}
	if err := tmp.Close(); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", 0, err
	}
	tmp = nil
	if err := syncDir(filepath.Dir(final)); err != nil {
		return "", 0, err
	}
	return digest, size, nil
}

// Open opens the blob of a digest.
func (b *Blobs) Open(digest string) (*os.File, error) {
	p, err := b.Path(digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s is missing from the content store", digest)
	}
	return f, err
}

// Verify rehashes a blob and says whether it matches its digest.
func (b *Blobs) Verify(digest string) error {
	f, err := b.Open(digest)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("blob %s hashes to %s", digest, got)
	}
	return nil
}

// List returns the digests of every stored blob.
func (b *Blobs) List() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(b.dir, "sha256"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, "sha256:"+e.Name())
	}
	return out, nil
}

// Remove deletes a blob; a missing one is not an error.
func (b *Blobs) Remove(digest string) error {
	p, err := b.Path(digest)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
