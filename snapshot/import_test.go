package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
)

type entry struct {
	name, link string
	typ        byte
	body       string
	mode       int64
	pax        map[string]string
	major      int64
}

func mkTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: typ, Mode: mode, PAXRecords: e.pax, Devmajor: e.major}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		must(t, tw.WriteHeader(hdr))
		if typ == tar.TypeReg {
			_, err := tw.Write([]byte(e.body))
			must(t, err)
		}
	}
	must(t, tw.Close())
	return buf.Bytes()
}

// A harmless start, so that a refused entry comes after real content that
// must be cleaned up.
var prelude = []entry{
	{name: "./", typ: tar.TypeDir},
	{name: "./etc/", typ: tar.TypeDir},
	{name: "./etc/passwd", body: "root:x:0:0::/root:/bin/sh\n"},
	{name: "./bin/", typ: tar.TypeDir},
	{name: "./bin/busybox", body: "not really", mode: 0o755},
}

// TestImportHostile: each hostile archive fails with a clear error and
// leaves no snapshot, no mount, no directory, and nothing outside.
func TestImportHostile(t *testing.T) {
	canary := t.TempDir() // symlinks point here; nothing may appear in it
	cases := []struct {
		name    string
		entries []entry
		raw     func(t *testing.T) []byte
		want    string // substring of the error
		entry   bool   // an *EntryError is expected
	}{
		{name: "absolute", entries: []entry{{name: "/etc/evil", body: "x"}}, want: `tar entry "/etc/evil": absolute path`, entry: true},
		{name: "dotdot", entries: []entry{{name: "../x", body: "x"}}, want: `tar entry "../x": path escapes the image`, entry: true},
		{name: "dotdot-nested", entries: []entry{{name: "./etc/../../x", body: "x"}}, want: "path escapes the image", entry: true},
		{name: "hardlink-out", entries: []entry{{name: "evil", typ: tar.TypeLink, link: "../../etc/passwd"}}, want: `hard link target "../../etc/passwd" leads outside the image`, entry: true},
		{name: "hardlink-absolute", entries: []entry{{name: "evil", typ: tar.TypeLink, link: "/etc/passwd"}}, want: "leads outside the image", entry: true},
		{name: "symlink-through", entries: []entry{{name: "link", typ: tar.TypeSymlink, link: canary}, {name: "link/x", body: "pwned"}}, want: `tar entry "link/x": path goes through the symlink "link"`, entry: true},
		{name: "symlink-through-dir", entries: []entry{{name: "a/link", typ: tar.TypeSymlink, link: "/"}, {name: "a/link/etc/", typ: tar.TypeDir}}, want: "goes through the symlink", entry: true},
		{name: "symlink-relative-out", entries: []entry{{name: "a/b", typ: tar.TypeSymlink, link: "../../etc"}}, want: `symlink target "../../etc" leads outside the image`, entry: true},
		{name: "hardlink-through-symlink", entries: []entry{{name: "l", typ: tar.TypeSymlink, link: "/etc"}, {name: "x", typ: tar.TypeLink, link: "l/passwd"}}, want: `goes through the symlink "l"`, entry: true},
		{name: "hardlinked-symlink-through", entries: []entry{{name: "l", typ: tar.TypeSymlink, link: canary}, {name: "l2", typ: tar.TypeLink, link: "l"}, {name: "l2/x", body: "pwned"}}, want: `goes through the symlink "l2"`, entry: true},
		{name: "symlink-chain-out", entries: []entry{{name: "d/", typ: tar.TypeDir}, {name: "d/l", typ: tar.TypeSymlink, link: ".."}, {name: "e", typ: tar.TypeSymlink, link: "d/l/.."}}, want: `tar entry "e": symlink to "d/l/.." leads outside the image through a chain of symlinks`, entry: true},
		{name: "symlink-chain-absolute-up", entries: []entry{{name: "a", typ: tar.TypeSymlink, link: "/"}, {name: "b", typ: tar.TypeSymlink, link: "a/.."}}, want: `tar entry "b": symlink to "a/.." leads outside the image`, entry: true},
		{name: "hardlinked-symlink-moves-out", entries: []entry{{name: "a/l", typ: tar.TypeSymlink, link: "../x"}, {name: "l2", typ: tar.TypeLink, link: "a/l"}}, want: `tar entry "l2": symlink to "../x" leads outside the image`, entry: true},
		{name: "symlink-chain-too-long", entries: chain(41), want: "starts a chain of more than 40 symlinks", entry: true},
		{name: "name-too-long", entries: []entry{{name: strings.Repeat("a/", 2100) + "f", body: "x"}}, want: "path longer than 4095 bytes", entry: true},
		{name: "name-too-deep", entries: []entry{{name: strings.Repeat("a/", 300) + "f", body: "x"}}, want: "path deeper than 256 directories", entry: true},
		{name: "link-target-too-long", entries: []entry{{name: "l", typ: tar.TypeSymlink, link: strings.Repeat("x", 5000)}}, want: "link target longer than 4095 bytes", entry: true},
		{name: "root-as-file", entries: []entry{{name: ".", body: "x"}}, want: "only a directory can stand for the image root", entry: true},
		{name: "truncated", raw: func(t *testing.T) []byte {
			b := mkTar(t, append(append([]entry{}, prelude...), entry{name: "big", body: strings.Repeat("x", 10000)})...)
			return b[:len(b)-1024-5000]
		}, want: "unexpected EOF"},
		{name: "garbage", raw: func(*testing.T) []byte { return bytes.Repeat([]byte("not a tar "), 200) }, want: "tar"},
		{name: "zstd", raw: func(*testing.T) []byte { return []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0} }, want: "zstd-compressed archives are not supported"},
		{name: "empty", raw: func(*testing.T) []byte { return nil }, want: "empty archive"},
	}
	for _, kind := range kinds {
		for _, c := range cases {
			t.Run(kind+"/"+c.name, func(t *testing.T) {
				ctx := context.Background()
				m, state := openManager(t, kind)
				var data []byte
				if c.raw != nil {
					data = c.raw(t)
				} else {
					data = mkTar(t, append(append([]entry{}, prelude...), c.entries...)...)
				}
				st, err := m.Import(ctx, "img/evil", Source{Tar: bytes.NewReader(data)}, nil)
				if err == nil {
					t.Fatalf("Import succeeded: %+v", st)
				}
				if !strings.HasPrefix(err.Error(), "image import: ") || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %q, want it to contain %q", err, c.want)
				}
				var ee *EntryError
				if c.entry != errors.As(err, &ee) {
					t.Fatalf("errors.As(*EntryError) = %v for %v", !c.entry, err)
				}
				assertNothingLeft(t, m, state)
				if ents, _ := os.ReadDir(canary); len(ents) != 0 {
					t.Fatalf("something was written outside the image: %v", ents)
				}
			})
		}
	}
}

// chain returns n symlinks c0 -> c1 -> ... -> c(n-1) -> "etc".
func chain(n int) []entry {
	var es []entry
	for i := 0; i < n; i++ {
		target := fmt.Sprintf("c%d", i+1)
		if i == n-1 {
			target = "etc"
		}
		es = append(es, entry{name: fmt.Sprintf("c%d", i), typ: tar.TypeSymlink, link: target})
	}
	return es
}

func assertNothingLeft(t *testing.T, m *Manager, state string) {
	t.Helper()
	ctx := context.Background()
	keys, err := m.Keys(ctx)
	must(t, err)
	if len(keys) != 0 {
		t.Fatalf("snapshots left: %q", keys)
	}
	if mps, err := MountsUnder(state); err != nil || len(mps) != 0 {
		t.Fatalf("mounts left: %q, %v", mps, err)
	}
	ents, err := os.ReadDir(filepath.Join(m.Dir(), "snapshots"))
	must(t, err)
	if len(ents) != 0 {
		t.Fatalf("snapshot directories left: %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(m.Dir(), "import")); len(ents) != 0 {
		t.Fatalf("import mountpoints left: %v", ents)
	}
}

// TestImportEdges: what an image may hold that looks odd but is fine.
func TestImportEdges(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			m, _ := openManager(t, kind)
			data := mkTar(t, append(append(append([]entry{}, prelude...),
				entry{name: "./etc/mtab", typ: tar.TypeSymlink, link: "/proc/mounts"},
				entry{name: "./usr/bin/env", typ: tar.TypeSymlink, link: "../../bin/busybox"},
				entry{name: "./etc/passwd.hard", typ: tar.TypeLink, link: "./etc/passwd"},
				entry{name: "./dev/", typ: tar.TypeDir},
				entry{name: "./dev/null", typ: tar.TypeChar, mode: 0o666, major: 1},
				entry{name: "./run/fifo", typ: tar.TypeFifo},
				entry{name: "./.wh.kept", body: "a file, not a whiteout"},
				entry{name: "./opaque/", typ: tar.TypeDir, pax: map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.note": "kept"}},
				// A symlink replaced by a directory: names under it are fine.
				entry{name: "./swap", typ: tar.TypeSymlink, link: "/etc"},
				entry{name: "./swap/", typ: tar.TypeDir},
				entry{name: "./swap/file", body: "inside"},
				// Chains that stay inside, and a loop (it resolves nowhere).
				entry{name: "./lib", typ: tar.TypeSymlink, link: "usr/lib"},
				entry{name: "./usr/lib/libc.so", typ: tar.TypeSymlink, link: "../../lib/libc.so.6"},
				entry{name: "./loop1", typ: tar.TypeSymlink, link: "loop2/x"},
				entry{name: "./loop2", typ: tar.TypeSymlink, link: "loop1/.."},
			), chain(40)...)...)
			st, err := m.Import(ctx, "img/edges", Source{Tar: bytes.NewReader(data)}, nil)
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			// passwd, busybox, mtab, env, passwd.hard, null, fifo, .wh.kept,
			// swap/file, lib, libc.so, loop1, loop2, c0…c39
			if st.Files != 53 {
				t.Fatalf("Files = %d", st.Files)
			}
			if l, err := os.Readlink(filepath.Join(st.Dir, "etc/mtab")); err != nil || l != "/proc/mounts" {
				t.Fatalf("etc/mtab -> %q, %v", l, err)
			}
			var a, b syscall.Stat_t
			must(t, syscall.Lstat(filepath.Join(st.Dir, "etc/passwd"), &a))
			must(t, syscall.Lstat(filepath.Join(st.Dir, "etc/passwd.hard"), &b))
			if a.Ino != b.Ino {
				t.Fatal("hard link not kept")
			}
			if b, err := os.ReadFile(filepath.Join(st.Dir, ".wh.kept")); err != nil || string(b) != "a file, not a whiteout" {
				t.Fatalf(".wh.kept = %q, %v", b, err)
			}
			if fi, err := os.Lstat(filepath.Join(st.Dir, "swap/file")); err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("swap/file: %v, %v", fi, err)
			}
			buf := make([]byte, 64)
			if _, err := syscall.Getxattr(filepath.Join(st.Dir, "opaque"), "trusted.overlay.opaque", buf); err == nil {
				t.Fatal("trusted.overlay.opaque was kept")
			}
			if n, err := syscall.Getxattr(filepath.Join(st.Dir, "opaque"), "user.note", buf); err != nil || string(buf[:n]) != "kept" {
				t.Fatalf("user.note = %q, %v", buf[:n], err)
			}
		})
	}
}

// TestDeviceNotRoot checks the refusal of device nodes for a non-root
// import (the tests run as root, so the rule is exercised directly).
func TestDeviceNotRoot(t *testing.T) {
	data := mkTar(t, entry{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660, major: 8})
	err := applyTar(context.Background(), t.TempDir(), bytes.NewReader(data), Limits{MaxBytes: -1, MaxFiles: -1, MaxLogical: -1}, nil, false)
	var ee *EntryError
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), `tar entry "dev/sda": device node`) {
		t.Fatalf("applyTar of a device as non-root: %v", err)
	}
}

func TestOverlayDirsParse(t *testing.T) {
	upper, lowers, ok := OverlayDirs([]mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"workdir=/s/3/work", "upperdir=/s/3/fs", "lowerdir=/s/2/fs:/s/1/fs", "index=off"}}})
	if !ok || upper != "/s/3/fs" || len(lowers) != 2 || lowers[0] != "/s/2/fs" || lowers[1] != "/s/1/fs" {
		t.Fatalf("OverlayDirs = %q, %q, %v", upper, lowers, ok)
	}
	if src, ok := BindSource([]mount.Mount{{Type: "bind", Source: "/s/1/fs", Options: []string{"rw", "rbind"}}}); !ok || src != "/s/1/fs" {
		t.Fatalf("BindSource = %q, %v", src, ok)
	}
	if _, _, ok := OverlayDirs([]mount.Mount{{Type: "bind", Source: "/x"}}); ok {
		t.Fatal("OverlayDirs of a bind")
	}
}

// TestImportDirRules: a directory source goes through the same rules (its
// links are copied, never followed), and a cancelled import leaves nothing.
func TestImportDirRules(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			m, state := openManager(t, kind)
			if keys, err := m.Keys(ctx); err != nil || len(keys) != 0 {
				t.Fatalf("Keys of a new store = %q, %v", keys, err)
			}
			if ok, err := m.Exists(ctx, "img/none"); err != nil || ok {
				t.Fatalf("Exists in a new store = %v, %v", ok, err)
			}
			must(t, m.Remove(ctx, "img/none"))

			outside := t.TempDir()
			must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret"), 0o600))
			src := t.TempDir()
			must(t, os.Symlink(outside, filepath.Join(src, "abs-link"))) // absolute: kept as a link
			st, err := m.Import(ctx, "img/ok", Source{Dir: src}, nil)
			must(t, err)
			if l, err := os.Readlink(filepath.Join(st.Dir, "abs-link")); err != nil || l != outside {
				t.Fatalf("abs-link -> %q, %v", l, err)
			}
			if st.Files != 1 || st.Bytes != 0 {
				t.Fatalf("stats %+v: the link was followed?", st)
			}
			must(t, m.Remove(ctx, "img/ok"))

			must(t, os.Symlink("../../etc", filepath.Join(src, "rel-out")))
			_, err = m.Import(ctx, "img/bad", Source{Dir: src}, nil)
			var ee *EntryError
			if !errors.As(err, &ee) || !strings.Contains(err.Error(), "leads outside the image") {
				t.Fatalf("Import of a dir with an escaping link: %v", err)
			}
			assertNothingLeft(t, m, state)

			must(t, os.Remove(filepath.Join(src, "rel-out")))
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := m.Import(cctx, "img/cancelled", Source{Dir: src}, nil); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled Import: %v", err)
			}
			assertNothingLeft(t, m, state)

			if _, err := m.Import(ctx, "img/x", Source{}, nil); err == nil {
				t.Fatal("Import without a source succeeded")
			}
			if _, err := m.Import(ctx, "img/x", Source{Dir: filepath.Join(src, "abs-link", "secret")}, nil); err == nil {
				t.Fatal("Import of a file as a directory succeeded")
			}
			assertNothingLeft(t, m, state)
		})
	}
}
