package persist

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strings"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/persist/hostile"
)

// RecoverExportTar writes path from the recovery area (session 0: the
// newest that holds it) to out as a tar stream: a file as one entry named
// by its base name, a directory as the entries beneath it, named relative
// to it. Owners are this process's, modes lose setuid, setgid and sticky
// bits; symlinks and special files are skipped, as close refuses them.
// Each file is read through the hostile-tree reader and checked when it
// ends: a file that changed while it was read ends the stream with an
// error, never a header whose content is wrong.
func (e *Env) RecoverExportTar(ctx context.Context, sandbox, p string, out io.Writer, session uint64) (*ExportResult, error) {
	f, err := e.findRecoverable(ctx, sandbox, session, p)
	if err != nil {
		return nil, err
	}
	res := &ExportResult{Skipped: []Skipped{}}
	entries, single := f.beneath, false
	if f.entry.Path != "" && f.entry.Type != change.TypeDir {
		entries, single = []RecoverEntry{f.entry}, true
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	tw := tar.NewWriter(bw)
	err = writeRecoverTar(ctx, f.rs, p, entries, single, tw, res)
	if err == nil {
		err = tw.Close()
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return res, err
}

func writeRecoverTar(ctx context.Context, rs *recoverySession, p string, entries []RecoverEntry, single bool, tw *tar.Writer, res *ExportResult) error {
	uid, gid := os.Getuid(), os.Getgid()
	skip := func(x RecoverEntry, why string) {
		res.Skipped = append(res.Skipped, Skipped{Path: x.Path, PathBytes: exactBytes(x.Path), Reason: why})
	}
	for _, x := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := strings.TrimPrefix(strings.TrimPrefix(x.Path, strings.TrimSuffix(p, "/")), "/")
		if single {
			name = path.Base(x.Path)
		}
		switch {
		case x.Kind == change.KindDelete || name == "":
			continue
		case x.Type == change.TypeDir:
			hdr := &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, Uid: uid, Gid: gid, ModTime: rs.info.Closed}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			res.Dirs++
			continue
		case x.Type == change.TypeSymlink:
			skip(x, RefuseSymlink)
			continue
		case x.Type != change.TypeFile:
			skip(x, RefuseSpecial)
			continue
		}
		tree, err := treeOf(rs, x)
		if err != nil {
			return err
		}
		r, err := hostile.OpenFile(tree, x.Path, hostile.Change{}, math.MaxInt64)
		if err != nil {
			skip(x, skipReason(err))
			continue
		}
		st := r.Stat()
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: st.Size, Mode: int64(exceptions.ModeBits(st.Mode, true)),
			Uid: uid, Gid: gid, ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec)}
		err = tw.WriteHeader(hdr)
		if err == nil {
			_, err = io.Copy(tw, verifyAtEOF{r})
		}
		r.Close()
		if err != nil {
			// A file that changed while it was read: its entry is short or
			// long, and the stream ends here with the error.
			return fmt.Errorf("export %s: %w", escape.Name(x.Path), err)
		}
		res.Files++
		res.Bytes += st.Size
	}
	return nil
}
