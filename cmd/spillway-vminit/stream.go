package main

import (
	"archive/tar"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/vm/proto"
)

// stream writes the scratch disk's upper layer to the changes port as an
// OCI layer tar: a whiteout (0:0 character device) as an empty ".wh.NAME",
// an opaque directory as its entry followed by "DIR/.wh..wh..opq". Hard
// links go as separate files; extended attributes are not sent. It ends
// with STREAMED <bytes> <crc32c> on the control port (CRC-32C: the
// CPU's crc32 instruction; SHA-256 in Go under TCG ran at a few MB/s).
func (g *guest) stream() error {
	unix.Sync()
	port := g.ports[proto.PortChanges]
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	cw := &countWriter{w: io.MultiWriter(port, h)}
	tw := tar.NewWriter(cw)
	upper := scratch + "/upper"
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == upper {
			return nil
		}
		rel, _ := filepath.Rel(upper, p)
		return writeEntry(tw, p, rel)
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	g.ctl.send(proto.MsgStreamed, strconv.FormatInt(cw.n, 10), fmt.Sprintf("%08x", h.Sum32()))
	return nil
}

func writeEntry(tw *tar.Writer, p, rel string) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil
	}
	hdr := &tar.Header{Name: rel, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: timeOf(st.Mtim), Format: tar.FormatPAX}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			wh := &tar.Header{Name: path.Join(path.Dir(rel), ".wh."+path.Base(rel)), Typeflag: tar.TypeReg, Mode: 0o600, ModTime: hdr.ModTime, Format: tar.FormatPAX,
				PAXRecords: map[string]string{proto.WhiteoutPAX: "1"}}
			return tw.WriteHeader(wh)
		}
		hdr.Typeflag, hdr.Devmajor, hdr.Devminor = tar.TypeChar, int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		return tw.WriteHeader(hdr)
	case unix.S_IFBLK:
		hdr.Typeflag, hdr.Devmajor, hdr.Devminor = tar.TypeBlock, int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		return tw.WriteHeader(hdr)
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
		return tw.WriteHeader(hdr)
	case unix.S_IFLNK:
		t, err := os.Readlink(p)
		if err != nil {
			return nil
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, t
		return tw.WriteHeader(hdr)
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		buf := make([]byte, 4)
		if n, err := unix.Lgetxattr(p, "trusted.overlay.opaque", buf); err == nil && n == 1 && buf[0] == 'y' {
			return tw.WriteHeader(&tar.Header{Name: rel + "/.wh..wh..opq", Typeflag: tar.TypeReg, Mode: 0o600, ModTime: hdr.ModTime, Format: tar.FormatPAX,
				PAXRecords: map[string]string{proto.WhiteoutPAX: "1"}})
		}
		return nil
	case unix.S_IFREG:
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = io.CopyN(tw, f, st.Size)
		return err
	}
	return nil // sockets
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
