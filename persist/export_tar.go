package persist

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// smallFile is the size up to which a file is read and checked whole
// before its header goes out.
const smallFile = 1 << 20

// ExportTar writes s as a tar stream to out: names relative to the
// exported path (a file or link exported alone: its base name), modes,
// owners, mtimes (to the second) and link targets as recorded, names
// exact (PAX headers for what ustar cannot hold). Each file's bytes are
// checked against its digest: a file up to smallFile before its header
// goes out, a larger one as it is copied. A mismatch returns the error with
// the stream cut before that entry (a large file: inside it) and no
// end-of-archive marker. It runs with the ledger parked (ParkLedger).
func (e *Env) ExportTar(ctx context.Context, s *ExportSet, out io.Writer) (*ExportStats, error) {
	// The stream reads blobs only: a reader that is slow to take it holds
	// up nobody's ledger section.
	if err := e.ParkLedger(); err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	st, err := e.exportTar(ctx, s, bw)
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return st, err
}

func (e *Env) exportTar(ctx context.Context, s *ExportSet, out io.Writer) (*ExportStats, error) {
	tw := tar.NewWriter(out)
	st := &ExportStats{}
	entries := s.Entries
	if s.Root != nil && s.Root.Type != change.TypeDir {
		entries = []*store.Record{s.Root}
	}
	if r := s.Root; r != nil && r.Type == change.TypeDir {
		// The exported directory itself: "./", as `tar -C DIR -c .` has
		// it, so an extraction gives DIR its mode and owner.
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: int64(r.Mode & DirModeBits), Uid: int(r.UID), Gid: int(r.GID), ModTime: r.Mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			return st, err
		}
	}
	buf := make([]byte, 256<<10)
	fetch, stop, err := e.prefetch(ctx, entries)
	if err != nil {
		return st, err
	}
	defer stop()
	for f := range fetch {
		r := f.r
		name := strings.TrimPrefix(s.rel(r), "/")
		if r == s.Root {
			name = path.Base(r.Path)
		}
		hdr := &tar.Header{Name: name, Mode: int64(r.Mode & 0o777), Uid: int(r.UID), Gid: int(r.GID), ModTime: r.Mtime}
		switch r.Type {
		case change.TypeDir:
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", int64(r.Mode&DirModeBits)
			st.Dirs++
		case change.TypeSymlink:
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, r.Link
			st.Links++
		case change.TypeFile:
			hdr.Typeflag, hdr.Size = tar.TypeReg, r.Size
			st.Files++
			st.Bytes += r.Size
		default:
			return st, recordErr(r, fmt.Errorf("cannot export a %s", r.Type))
		}
		<-f.done
		if f.err != nil {
			// A small file is checked whole before its header: a
			// corrupt one never enters the stream.
			return st, f.err
		}
		var src io.ReadCloser
		if r.Type == change.TypeFile && !f.want {
			// Open first: a missing or pruned blob fails before its header.
			var err error
			if src, err = e.OpenRecord(r); err != nil {
				return st, err
			}
		}
		err := tw.WriteHeader(hdr)
		if err == nil {
			_, err = tw.Write(f.data)
		}
		if err != nil {
			if src != nil {
				src.Close()
			}
			return st, recordErr(r, err)
		}
		if src != nil {
			_, err := io.CopyBuffer(tw, src, buf)
			src.Close()
			if err != nil {
				return st, err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	return st, tw.Close()
}
