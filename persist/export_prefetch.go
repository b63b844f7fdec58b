package persist

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// prefetchWorkers read and check small files ahead of the writer of a tar
// stream, prefetchWindow entries at most: blob reads (open, read, hash,
// close) overlap each other and the writing, and the entries still come
// out in order. Memory stays under (window + workers) small files.
const (
	prefetchWorkers = 4
	prefetchWindow  = 64
)

// fetched is an entry of an export with, for a small file, its content
// read and checked (or the error that stopped it).
type fetched struct {
	r    *store.Record
	data []byte
	err  error
	done chan struct{} // closed when data and err are set
	want bool          // a small file: the workers fetch it
}

// prefetch streams entries in order, small files read ahead. stop ends it
// early (the caller stops reading); it must be called.
func (e *Env) prefetch(ctx context.Context, entries []*store.Record) (out <-chan *fetched, stop func(), err error) {
	blobs, err := e.openBlobDir()
	if err != nil {
		return nil, nil, err
	}
	ordered := make(chan *fetched, prefetchWindow)
	work := make(chan *fetched, prefetchWindow)
	quit := make(chan struct{})
	var once sync.Once
	stop = func() { once.Do(func() { close(quit) }) }
	go func() {
		defer close(ordered)
		defer close(work)
		for _, r := range entries {
			f := &fetched{r: r, done: make(chan struct{}), want: r.Type == change.TypeFile && r.Size >= 0 && r.Size <= smallFile}
			if f.want {
				select {
				case work <- f:
				case <-quit:
					return
				case <-ctx.Done():
					return
				}
			} else {
				close(f.done)
			}
			select {
			case ordered <- f:
			case <-quit:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range prefetchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				select {
				case <-quit:
				default:
					f.data, f.err = blobs.read(f.r)
				}
				close(f.done)
			}
		}()
	}
	go func() {
		wg.Wait()
		blobs.close()
	}()
	return ordered, stop, nil
}

// blobDir reads small blobs by a descriptor of blobs/sha256: an openat of
// one name (never through a symlink), an fstat, one read and a close per
// blob, checked against its digest and size as OpenRecord checks them.
type blobDir struct {
	e  *Env
	fd int
}

func (e *Env) openBlobDir() (*blobDir, error) {
	fd, err := unix.Open(filepath.Join(e.blobs.dir, "sha256"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("content store: %w", err)
	}
	return &blobDir{e: e, fd: fd}, nil
}

func (d *blobDir) close() { unix.Close(d.fd) }

// read returns r's content. Anything out of the ordinary (no digest, a
// pruned record, a size that differs from the record's) takes the
// checking reader's way, for its exact errors.
func (d *blobDir) read(r *store.Record) ([]byte, error) {
	hexPart, ok := strings.CutPrefix(r.Digest, "sha256:")
	if r.Pruned || !ok || len(hexPart) != 64 || strings.ContainsRune(hexPart, '/') {
		return d.e.readRecord(r)
	}
	fd, err := unix.Openat(d.fd, hexPart, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return d.e.readRecord(r)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != r.Size {
		return d.e.readRecord(r)
	}
	buf := make([]byte, r.Size)
	for n := 0; n < len(buf); {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || m == 0 {
			return d.e.readRecord(r) // shrank or failed under us
		}
		n += m
	}
	sum := sha256.Sum256(buf)
	if got := hex.EncodeToString(sum[:]); got != hexPart {
		return nil, recordErr(r, fmt.Errorf("blob %s hashes to sha256:%s (%s): %w", r.Digest, got, plural(len(buf), "byte"), ErrCorrupt))
	}
	return buf, nil
}

// readRecord reads a small file's content whole, checked against its
// digest.
func (e *Env) readRecord(r *store.Record) ([]byte, error) {
	src, err := e.OpenRecord(r)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	buf := make([]byte, r.Size+1)
	n := 0
	for {
		m, err := src.Read(buf[n:])
		n += m
		if err == io.EOF {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
		if n == len(buf) {
			// The checking reader fails past the size; never reached.
			return nil, io.ErrShortBuffer
		}
	}
}
