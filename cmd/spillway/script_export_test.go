package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/rogpeppe/go-internal/testscript"
)

// The export scripts' commands: listings that show names exactly (Go
// quoting), modes, owners, mtimes and link targets, for cmp.
func init() {
	// tarls FILE: one line per tar entry, then "end" when the archive
	// ended with its marker ("cut: …" or an error line when it did not).
	scriptCmds["tarls"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: tarls FILE")
		}
		raw, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		tr := tar.NewReader(bytes.NewReader(raw))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				// Go's reader takes a stream cut at an entry's boundary
				// for an end: look for the marker (zero blocks) itself.
				if len(raw) >= 1024 && bytes.Count(raw[len(raw)-1024:], []byte{0}) == 1024 {
					fmt.Fprintln(ts.Stdout(), "end")
				} else {
					fmt.Fprintln(ts.Stdout(), "cut: no end marker")
				}
				return
			}
			if err != nil {
				fmt.Fprintf(ts.Stdout(), "error: %v\n", err)
				return
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				fmt.Fprintf(ts.Stdout(), "error: %v\n", err)
				return
			}
			line := fmt.Sprintf("%c %04o %d:%d %s %q", h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.UTC().Format("2006-01-02T15:04:05"), h.Name)
			switch h.Typeflag {
			case tar.TypeSymlink:
				line += " -> " + fmt.Sprintf("%q", h.Linkname)
			case tar.TypeReg:
				line += fmt.Sprintf(" %q", data)
			}
			fmt.Fprintln(ts.Stdout(), line)
		}
	}
	// treels DIR: one line per entry below DIR (links never followed),
	// sorted: type, mode, uid:gid, mtime (files and links; "-" for
	// directories the export made), name, target or content.
	scriptCmds["treels"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: treels DIR")
		}
		root := ts.MkAbs(args[0])
		var lines []string
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == root {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			rel, _ := filepath.Rel(root, p)
			typ, tail := "f", ""
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				typ = "l"
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				tail = fmt.Sprintf(" -> %q", target)
			case fi.IsDir():
				typ = "d"
			default:
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				tail = fmt.Sprintf(" %q", data)
			}
			lines = append(lines, fmt.Sprintf("%s %04o %d:%d %s %q%s", typ, fi.Mode().Perm(), st.Uid, st.Gid,
				fi.ModTime().UTC().Format("2006-01-02T15:04:05"), rel, tail))
			return nil
		})
		if errors.Is(err, fs.ErrNotExist) {
			ts.Fatalf("%s: %v", args[0], err)
		}
		ts.Check(err)
		sort.Strings(lines)
		for _, l := range lines {
			fmt.Fprintln(ts.Stdout(), l)
		}
	}
}
