package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// The sparse archives in testdata were made by GNU tar 1.34 (--sparse, in
// the gnu, pax 1.0 and pax 0.1 formats) from data/sp: 60 GiB with "head" at
// 0, 8 KiB of 'x' at 1 GiB and "tail\n" at the end. Each is 20 KiB.
const sparseSize = 60 << 30

var sparseArchives = []string{"sparse-gnu.tar", "sparse-pax1.tar", "sparse-pax01.tar"}

// TestImportSparse: a 20 KiB archive declaring a 60 GiB sparse file imports
// in seconds with a few blocks on disk, the right size and content, and
// holes do not count against --max-bytes.
func TestImportSparse(t *testing.T) {
	for _, kind := range kinds {
		for _, arc := range sparseArchives {
			if kind == KindNative && arc != "sparse-gnu.tar" {
				continue // the snapshotter does not change the applier
			}
			t.Run(kind+"/"+arc, func(t *testing.T) {
				m, _ := openManager(t, kind)
				data, err := os.ReadFile(filepath.Join("testdata", arc))
				must(t, err)
				start := time.Now()
				st, err := m.Import(context.Background(), "img/sparse", Source{Tar: bytes.NewReader(data), Limits: Limits{MaxBytes: 64 << 10}}, nil)
				if err != nil {
					t.Fatalf("Import: %v", err)
				}
				if d := time.Since(start); d > 30*time.Second {
					t.Fatalf("import took %v", d)
				}
				if st.Files != 1 || st.Bytes != sparseSize {
					t.Fatalf("stats %+v", st)
				}
				checkSparse(t, filepath.Join(st.Dir, "data/sp"))
			})
		}
	}
}

// checkSparse asserts the size, the disk use and the content of data/sp.
func checkSparse(t *testing.T, p string) {
	t.Helper()
	var sst syscall.Stat_t
	must(t, syscall.Stat(p, &sst))
	if sst.Size != sparseSize {
		t.Fatalf("size %d, want %d", sst.Size, int64(sparseSize))
	}
	if used := sst.Blocks * 512; used > 1<<20 {
		t.Fatalf("%d bytes on disk: holes were written", used)
	}
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	for _, c := range []struct {
		off  int64
		want string
	}{
		{0, "head\x00"},
		{1<<30 - 1, "\x00" + strings.Repeat("x", 8192) + "\x00"},
		{1 << 29, strings.Repeat("\x00", 4096)},
		{sparseSize - 6, "\x00tail\n"},
	} {
		got := make([]byte, len(c.want))
		if _, err := f.ReadAt(got, c.off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Fatalf("at %d: %q..., want %q...", c.off, got[:min(len(got), 16)], c.want[:min(len(c.want), 16)])
		}
	}
}

// TestImportLogicalLimit: a declared size past the logical limit is
// refused at its header, before any expanding.
func TestImportLogicalLimit(t *testing.T) {
	m, state := openManager(t, KindOverlay)
	data, err := os.ReadFile("testdata/sparse-gnu.tar")
	must(t, err)
	start := time.Now()
	_, err = m.Import(context.Background(), "img/big", Source{Tar: bytes.NewReader(data), Limits: Limits{MaxLogical: 1 << 30}}, nil)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != "logical size" || !errdefs.IsResourceExhausted(err) {
		t.Fatalf("Import: %v", err)
	}
	if !strings.Contains(err.Error(), `tar entry "data/sp": the files' logical size (holes included) passes 1 GiB`) {
		t.Fatalf("error %q", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refusing took %v", d)
	}
	assertNothingLeft(t, m, state)
}

// producer writes an endless tar (optionally gzip-compressed) into a pipe
// and counts the tar bytes and entries it wrote; it stops when the reader
// goes away.
type producer struct {
	bytes, entries atomic.Int64
}

func (p *producer) start(t *testing.T, gz bool, fill func(tw *tar.Writer, p *producer) error) io.Reader {
	pr, pw := io.Pipe()
	t.Cleanup(func() { pr.Close() })
	go func() {
		var w io.Writer = countWriter{pw, &p.bytes}
		var zw *gzip.Writer
		if gz {
			zw = gzip.NewWriter(pw)
			w = countWriter{zw, &p.bytes}
		}
		err := fill(tar.NewWriter(w), p)
		if zw != nil && err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// TestImportLimitsFailFast: past --max-bytes (plain and gzip: a gzip bomb)
// or --max-files, an endless archive fails soon after the limit, with a
// clear error, and leaves nothing.
func TestImportLimitsFailFast(t *testing.T) {
	bigFile := func(tw *tar.Writer, p *producer) error {
		if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 39}); err != nil {
			return err
		}
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		for {
			if _, err := tw.Write(chunk); err != nil {
				return err
			}
		}
	}
	zeroFile := func(tw *tar.Writer, p *producer) error {
		if err := tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 39}); err != nil {
			return err
		}
		chunk := make([]byte, 64<<10)
		for {
			if _, err := tw.Write(chunk); err != nil {
				return err
			}
		}
	}
	manyFiles := func(tw *tar.Writer, p *producer) error {
		for i := 0; ; i++ {
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d/f%d", i), Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
				return err
			}
			p.entries.Add(1)
		}
	}
	// Each entry makes 200 parent directories the archive never lists.
	deepParents := func(tw *tar.Writer, p *producer) error {
		for i := 0; ; i++ {
			name := fmt.Sprintf("p%d/", i) + strings.Repeat("d/", 199) + "f"
			if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
				return err
			}
			p.entries.Add(1)
		}
	}
	// Directories and symlinks carry no file data but take blocks.
	manyDirs := func(tw *tar.Writer, p *producer) error {
		for i := 0; ; i++ {
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%d/", i), Typeflag: tar.TypeDir, Mode: 0o755,
				PAXRecords: map[string]string{"SCHILY.xattr.user.pad": strings.Repeat("x", 1000)}}); err != nil {
				return err
			}
			p.entries.Add(1)
		}
	}
	cases := []struct {
		name  string
		gz    bool
		fill  func(*tar.Writer, *producer) error
		lim   Limits
		want  string
		check func(t *testing.T, p *producer)
	}{
		{"max-bytes", false, bigFile, Limits{MaxBytes: 1 << 20}, `tar entry "big": the archive writes more than 1 MiB`, func(t *testing.T, p *producer) {
			if n := p.bytes.Load(); n > 4<<20 {
				t.Fatalf("read %d bytes of the archive past a 1 MiB limit", n)
			}
		}},
		{"gzip-bomb", true, bigFile, Limits{MaxBytes: 1 << 20}, "the archive writes more than 1 MiB", func(t *testing.T, p *producer) {
			if n := p.bytes.Load(); n > 8<<20 {
				t.Fatalf("expanded %d bytes of the archive past a 1 MiB limit", n)
			}
		}},
		{"gzip-bomb-zeros", true, zeroFile, Limits{MaxBytes: 1 << 20}, "the archive writes more than 1 MiB", func(t *testing.T, p *producer) {
			if n := p.bytes.Load(); n > 8<<20 {
				t.Fatalf("expanded %d bytes of the archive past a 1 MiB limit", n)
			}
		}},
		{"max-files", false, manyFiles, Limits{MaxFiles: 1000}, "the archive has more than 1000 entries", func(t *testing.T, p *producer) {
			if n := p.entries.Load(); n > 1100 {
				t.Fatalf("read %d entries past a limit of 1000", n)
			}
		}},
		{"max-files-implicit-parents", false, deepParents, Limits{MaxFiles: 1000}, "the archive has more than 1000 entries", func(t *testing.T, p *producer) {
			if n := p.entries.Load(); n > 20 {
				t.Fatalf("read %d entries of 200 implicit directories each past a limit of 1000", n)
			}
		}},
		{"max-bytes-metadata", false, manyDirs, Limits{MaxBytes: 1 << 20}, "the archive writes more than 1 MiB", func(t *testing.T, p *producer) {
			if n := p.entries.Load(); n > 300 {
				t.Fatalf("read %d directories of about 5 KiB each past a 1 MiB limit", n)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, state := openManager(t, KindOverlay)
			p := &producer{}
			_, err := m.Import(context.Background(), "img/bomb", Source{Tar: p.start(t, c.gz, c.fill), Limits: c.lim}, nil)
			var le *LimitError
			if !errors.As(err, &le) || !errdefs.IsResourceExhausted(err) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Import: %v, want %q", err, c.want)
			}
			c.check(t, p)
			assertNothingLeft(t, m, state)
		})
	}
}

// TestImportZeroBlocks: all-zero blocks of a dense archive are not
// written but are charged (the archive carried them); the holes of a
// 60 GiB sparse file in a directory source are neither read, written nor
// charged, and its hard links stay links.
func TestImportZeroBlocks(t *testing.T) {
	m, state := openManager(t, KindOverlay)
	dense := append(append([]byte("start"), make([]byte, 32<<20)...), "end"...)
	data := mkTar(t, entry{name: "dense", body: string(dense)})
	_, err := m.Import(context.Background(), "img/zeros", Source{Tar: bytes.NewReader(data), Limits: Limits{MaxBytes: 16 << 20}}, nil)
	if !errdefs.IsResourceExhausted(err) {
		t.Fatalf("Import of 32 MiB of dense zeros under --max-bytes 16M: %v", err)
	}
	assertNothingLeft(t, m, state)
	st, err := m.Import(context.Background(), "img/zeros", Source{Tar: bytes.NewReader(data), Limits: Limits{MaxBytes: 33 << 20}}, nil)
	must(t, err)
	got, err := os.ReadFile(filepath.Join(st.Dir, "dense"))
	must(t, err)
	if !bytes.Equal(got, dense) {
		t.Fatal("content of dense changed")
	}
	var sst syscall.Stat_t
	must(t, syscall.Stat(filepath.Join(st.Dir, "dense"), &sst))
	if sst.Blocks*512 > 1<<20 {
		t.Fatalf("dense takes %d bytes on disk", sst.Blocks*512)
	}

	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "sp"))
	must(t, err)
	_, err = f.WriteAt([]byte("middle"), 30<<30)
	must(t, err)
	must(t, f.Truncate(sparseSize))
	must(t, f.Close())
	must(t, os.Link(filepath.Join(src, "sp"), filepath.Join(src, "sp2")))
	start := time.Now()
	st, err = m.Import(context.Background(), "img/dir", Source{Dir: src, Limits: Limits{MaxBytes: 64 << 10}}, nil)
	must(t, err)
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("import took %v", d)
	}
	must(t, syscall.Stat(filepath.Join(st.Dir, "sp"), &sst))
	if sst.Size != sparseSize || sst.Blocks*512 > 1<<20 || sst.Nlink != 2 {
		t.Fatalf("sp: size %d, %d bytes on disk, %d links", sst.Size, sst.Blocks*512, sst.Nlink)
	}
	got = make([]byte, 8)
	f, err = os.Open(filepath.Join(st.Dir, "sp2"))
	must(t, err)
	defer f.Close()
	if _, err := f.ReadAt(got, 30<<30-1); err != nil || string(got) != "\x00middle\x00" {
		t.Fatalf("sp2 at 30 GiB: %q, %v", got, err)
	}
}
