package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// FuzzImport applies arbitrary archives with small limits. Whatever the
// bytes: no panic, nothing written beside the tree, and a tree that
// imported holds no symlink that resolves out of it (checked again from
// the disk, not from the applier's own record) and no more data blocks
// than the byte limit allows. Its seed corpus runs in every go test.
func FuzzImport(f *testing.F) {
	for _, name := range []string{"sparse-small.tar", "sparse-gnu.tar"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	seeds := [][]entry{
		prelude,
		{{name: "d/", typ: tar.TypeDir}, {name: "d/l", typ: tar.TypeSymlink, link: ".."}, {name: "e", typ: tar.TypeSymlink, link: "d/l/.."}},
		{{name: "a/l", typ: tar.TypeSymlink, link: "../x"}, {name: "l2", typ: tar.TypeLink, link: "a/l"}},
		{{name: "l", typ: tar.TypeSymlink, link: "/"}, {name: "l/x", body: "through"}},
		{{name: "x", body: "1"}, {name: "x/", typ: tar.TypeDir}, {name: "x/y", body: "2"}, {name: "x", typ: tar.TypeSymlink, link: "x"}},
		{{name: "../up", body: "x"}},
		{{name: "h", typ: tar.TypeLink, link: "prelude-missing"}},
		{{name: "zeros", body: string(make([]byte, 20000))}, {name: "fifo", typ: tar.TypeFifo}},
		append(append([]entry{}, prelude...), chain(41)...),
	}
	for _, s := range seeds {
		data := mkTarF(f, s)
		f.Add(data)
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(data)
		zw.Close()
		f.Add(gz.Bytes())
	}
	f.Fuzz(fuzzImportOne)
}

var fuzzLimits = Limits{MaxBytes: 1 << 20, MaxFiles: 1000, MaxLogical: 64 << 20}

// fuzzImportOne is FuzzImport's check of one archive.
func fuzzImportOne(t *testing.T, data []byte) {
	lim := fuzzLimits
	{
		parent := t.TempDir()
		root := filepath.Join(parent, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		err := applyTar(context.Background(), root, bytes.NewReader(data), lim, nil, os.Geteuid() == 0)
		if ents, _ := os.ReadDir(parent); len(ents) != 1 {
			t.Fatalf("written beside the tree: %v", ents)
		}
		if err != nil {
			return
		}
		links := map[string]string{}
		var blocks int64
		var files int64
		werr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			switch {
			case d.Type()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				links[rel] = target
			case d.Type().IsRegular():
				var st syscall.Stat_t
				if err := syscall.Lstat(p, &st); err != nil {
					return err
				}
				blocks += st.Blocks * 512
				files++
			}
			return nil
		})
		if werr != nil {
			t.Fatal(werr)
		}
		if name, why := escaping(links); name != "" {
			t.Fatalf("imported %s -> %s, which %s", name, links[name], why)
		}
		// Each file may round up to a block at each end of each write.
		if blocks > lim.MaxBytes+files*2*blockSize {
			t.Fatalf("%d bytes on disk past a limit of %d", blocks, lim.MaxBytes)
		}
	}
}

// mkTarF is mkTar for a fuzz target's seeds.
func mkTarF(f *testing.F, entries []entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: typ, Mode: 0o755, PAXRecords: e.pax}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			f.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			f.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}
