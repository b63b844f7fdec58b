package vm

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/vm/proto"
	"golang.org/x/sys/unix"
)

type tarEntry struct {
	hdr  tar.Header
	data string
}

func mkTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if e.data != "" {
			tw.Write([]byte(e.data))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func reg(name, data string) tarEntry {
	return tarEntry{tar.Header{Name: name, Typeflag: tar.TypeReg}, data}
}

// wh is a guest's deletion or opaque marker: a ".wh." name with the PAX
// record that says so.
func wh(name, data string) tarEntry {
	return tarEntry{tar.Header{Name: name, Typeflag: tar.TypeReg, Format: tar.FormatPAX, PAXRecords: map[string]string{proto.WhiteoutPAX: "1"}}, data}
}
func dir(name string) tarEntry {
	return tarEntry{tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755}, ""}
}

func refusedNames(res *StreamResult) map[string]string {
	out := map[string]string{}
	for _, r := range res.Refused {
		out[r.Name] = r.Reason
	}
	return out
}

func TestMaterialiseGoodStream(t *testing.T) {
	upper := t.TempDir()
	// The old upper layer: a file to be deleted, a directory to be made opaque.
	os.MkdirAll(filepath.Join(upper, "etc"), 0o755)
	os.WriteFile(filepath.Join(upper, "etc", "old"), []byte("x"), 0o644)
	os.MkdirAll(filepath.Join(upper, "root", "stale"), 0o755)
	data := mkTar(t, []tarEntry{
		dir("etc"),
		wh("etc/.wh.old", ""),
		wh("etc/.wh.hostname", ""),
		dir("root"),
		wh("root/.wh..wh..opq", ""),
		reg("root/new", "fresh"),
		dir("home"), dir("home/user"),
		reg("home/user/doc.txt", "hello"),
		{tar.Header{Name: "home/user/link", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}, ""},
	})
	res, err := Materialise(bytes.NewReader(data), upper, DefaultStreamLimits)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || len(res.Refused) != 0 {
		t.Fatalf("result %+v", res)
	}
	if b, _ := os.ReadFile(filepath.Join(upper, "home/user/doc.txt")); string(b) != "hello" {
		t.Errorf("doc.txt = %q", b)
	}
	for _, wh := range []string{"etc/old", "etc/hostname"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(upper, wh), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s is not a whiteout: %v %o", wh, err, st.Mode)
		}
	}
	if _, err := os.Lstat(filepath.Join(upper, "root/stale")); err == nil {
		t.Error("opaque root/ kept its old content")
	}
	buf := make([]byte, 4)
	if n, err := unix.Lgetxattr(filepath.Join(upper, "root"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("root/ not opaque: %v", err)
	}
	if l, _ := os.Readlink(filepath.Join(upper, "home/user/link")); l != "/etc/shadow" {
		t.Errorf("link = %q", l)
	}
	if int(res.Bytes) != len(data) {
		t.Errorf("read %d of %d bytes", res.Bytes, len(data))
	}
}

// TestMaterialiseUserWhNames: a file the guest's user named ".wh.NAME" or
// ".wh..wh..opq" (no whiteout record) is applied as a file: NAME and the
// directory's content stay (before, the first deleted NAME, the second
// emptied the directory).
func TestMaterialiseUserWhNames(t *testing.T) {
	upper := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(upper, "docs", "d"), 0o755))
	must(os.WriteFile(filepath.Join(upper, "docs", "keep.txt"), []byte("keep"), 0o644))
	must(os.WriteFile(filepath.Join(upper, "docs", "d", "a.txt"), []byte("a"), 0o644))
	data := mkTar(t, []tarEntry{reg("docs/.wh.keep.txt", ""), reg("docs/d/.wh..wh..opq", "")})
	res, err := Materialise(bytes.NewReader(data), upper, DefaultStreamLimits)
	if err != nil || !res.Complete {
		t.Fatalf("%+v, %v", res, err)
	}
	for _, p := range []string{"docs/keep.txt", "docs/d/a.txt", "docs/.wh.keep.txt", "docs/d/.wh..wh..opq"} {
		fi, err := os.Lstat(filepath.Join(upper, p))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s after a stream of files named .wh.: %v %v", p, fi, err)
		}
	}
}

func TestMaterialiseRefusesHostileEntries(t *testing.T) {
	base := t.TempDir()
	upper := filepath.Join(base, "upper")
	outside := filepath.Join(base, "outside")
	os.MkdirAll(upper, 0o755)
	os.MkdirAll(outside, 0o755)
	os.Symlink(outside, filepath.Join(upper, "escape")) // planted by an earlier run
	lim := DefaultStreamLimits
	lim.MaxFile = 10
	data := mkTar(t, []tarEntry{
		reg("../up", "x"),
		reg("a/../../up2", "x"),
		{tar.Header{Name: "/abs", Typeflag: tar.TypeReg}, ""},
		reg("escape/pwned", "x"),
		reg("missing/parent", "x"),
		{tar.Header{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}, ""},
		{tar.Header{Name: "blk", Typeflag: tar.TypeBlock, Devmajor: 8}, ""},
		{tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "etc/passwd"}, ""},
		{tar.Header{Name: "suid", Typeflag: tar.TypeReg, Mode: 0o4755}, ""},
		reg("big", "more than ten bytes"),
		wh(".wh..wh..opq", ""),
		wh(".wh..wh.plnk", ""),
		wh(".wh...", ""),
		wh("escape/.wh.x", ""),
		wh(".wh.content", "data"),
		reg("ok", "fine"),
	})
	res, err := Materialise(bytes.NewReader(data), upper, lim)
	if err != nil {
		t.Fatal(err)
	}
	got := refusedNames(res)
	for _, n := range []string{"../up", "a/../../up2", "/abs", "escape/pwned", "missing/parent", "dev", "blk", "hard", "suid", "big",
		".wh..wh..opq", ".wh..wh.plnk", ".wh...", "escape/.wh.x", ".wh.content"} {
		if _, ok := got[n]; !ok {
			t.Errorf("%q not refused (refused: %v)", n, got)
		}
	}
	if res.Applied != 1 || !res.Complete {
		t.Errorf("applied %d, complete %v; want 1, true", res.Applied, res.Complete)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("wrote outside the upper layer: %v", ents)
	}
	for _, n := range []string{"up", "up2"} {
		if _, err := os.Lstat(filepath.Join(base, n)); err == nil {
			t.Errorf("%s written outside", n)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(upper, "ok")); string(b) != "fine" {
		t.Errorf("ok = %q", b)
	}
}

func TestMaterialiseTruncatedStream(t *testing.T) {
	upper := t.TempDir()
	data := mkTar(t, []tarEntry{reg("first", "one"), reg("second", strings.Repeat("y", 5000))})
	cut := data[:512+512+512+1000] // header+data of first, header of second, part of its data
	res, err := Materialise(bytes.NewReader(cut), upper, DefaultStreamLimits)
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete || res.Err == "" {
		t.Fatalf("truncated stream taken as complete: %+v", res)
	}
	if b, _ := os.ReadFile(filepath.Join(upper, "first")); string(b) != "one" {
		t.Errorf("first = %q", b)
	}
	if _, err := os.Lstat(filepath.Join(upper, "second")); err == nil {
		t.Error("the cut file was kept")
	}
	// A huge declared size with no data behind it is cut too.
	huge := mkTar(t, []tarEntry{reg("a", "x")})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Size: 1 << 40, Mode: 0o644})
	res, _ = Materialise(bytes.NewReader(append(huge[:1024], buf.Bytes()...)), t.TempDir(), DefaultStreamLimits)
	if res.Complete || refusedNames(res)["huge"] != "too large" {
		t.Errorf("huge entry: %+v", res)
	}
}

// TestMaterialiseKeepsRefusedContent: a refused file with a clean name is
// written to the keep directory with the guest's owner, mtime and
// permission bits (without setuid), as a restore takes them; nothing else
// is kept, nor written outside it.
func TestMaterialiseKeepsRefusedContent(t *testing.T) {
	base := t.TempDir()
	upper, keep := filepath.Join(base, "upper"), filepath.Join(base, "keep")
	os.MkdirAll(upper, 0o755)
	os.Symlink(base, filepath.Join(upper, "escape"))
	lim := DefaultStreamLimits
	lim.MaxFile = 10
	data := mkTar(t, []tarEntry{
		{tar.Header{Name: "docs/suid", Typeflag: tar.TypeReg, Mode: 0o4750, Uid: 1000, Gid: 1001, ModTime: time.Unix(1600000000, 5)}, "secret"},
		reg("escape/pwned", "planted"),
		reg("../up", "x"),
		reg("big", "more than ten bytes"),
		{tar.Header{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}, ""},
		reg("ok", "fine"),
	})
	res, err := MaterialiseKeeping(bytes.NewReader(data), upper, lim, keep)
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for _, r := range res.Refused {
		kept[r.Name] = r.Kept
	}
	want := map[string]bool{"docs/suid": true, "escape/pwned": true, "../up": false, "big": false, "dev": false}
	for n, k := range want {
		if got, ok := kept[n]; !ok || got != k {
			t.Errorf("%s: kept %v (refused %v); want %v", n, got, ok, k)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(keep, "docs/suid"), &st); err != nil || st.Mode&0o7777 != 0o750 ||
		st.Uid != 1000 || st.Gid != 1001 || st.Mtim.Sec != 1600000000 {
		t.Errorf("kept suid: %v, mode %o, owner %d:%d, mtime %d; want 750, 1000:1001, 1600000000", err, st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Sec)
	}
	if b, _ := os.ReadFile(filepath.Join(keep, "escape/pwned")); string(b) != "planted" {
		t.Errorf("kept escape/pwned = %q", b)
	}
	if _, err := os.Lstat(filepath.Join(base, "pwned")); err == nil {
		t.Error("written through the planted link")
	}
	if b, _ := os.ReadFile(filepath.Join(upper, "ok")); string(b) != "fine" || !res.Complete {
		t.Errorf("ok = %q, complete %v", b, res.Complete)
	}
}

// TestMaterialiseKeepsHoles: a guest's sparse file comes in the stream as
// zeros; in the upper layer it is sparse again, with its bytes.
func TestMaterialiseKeepsHoles(t *testing.T) {
	upper := t.TempDir()
	const size = 64 << 20
	data := make([]byte, size)
	copy(data[size-3:], "end")
	stream := mkTar(t, []tarEntry{reg("disk.img", string(data))})
	res, err := Materialise(bytes.NewReader(stream), upper, DefaultStreamLimits)
	if err != nil || !res.Complete || res.Applied != 1 {
		t.Fatalf("%+v, %v", res, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(upper, "disk.img"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size || st.Blocks*512 > 64<<10 {
		t.Fatalf("disk.img: size %d, %d bytes on disk; want %d and a few blocks", st.Size, st.Blocks*512, size)
	}
	got, err := os.ReadFile(filepath.Join(upper, "disk.img"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("content differs (%v)", err)
	}
}

// TestMaterialiseLongNameDeletion: the guest's deletion of a file whose
// name is 252–255 bytes (".wh." and the name is longer than a file name
// may be) still deletes it; a plain entry that long is still refused.
func TestMaterialiseLongNameDeletion(t *testing.T) {
	upper := t.TempDir()
	long := strings.Repeat("n", 255)
	if err := os.MkdirAll(filepath.Join(upper, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(upper, "docs", long), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(upper, "c"), []byte("top"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := mkTar(t, []tarEntry{wh("docs/.wh."+long, ""), reg("docs/.x"+long, "too long"), wh("docs/x/../../.wh.c", "")})
	res, err := Materialise(bytes.NewReader(data), upper, DefaultStreamLimits)
	if err != nil || !res.Complete {
		t.Fatalf("%+v, %v", res, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(upper, "docs", long), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("the 255-byte name after its deletion: %+v %v, want a whiteout", st, err)
	}
	if len(res.Refused) != 2 || !strings.HasPrefix(res.Refused[0].Name, "docs/.x") || res.Refused[0].Reason != "name component too long" ||
		res.Refused[1].Name != "docs/x/../../.wh.c" || !strings.HasPrefix(res.Refused[1].Reason, "unclean name") {
		t.Errorf("refused %+v, want the 257-byte plain name and the unclean whiteout", res.Refused)
	}
	if b, err := os.ReadFile(filepath.Join(upper, "c")); err != nil || string(b) != "top" {
		t.Errorf("c after an unclean whiteout of it: %q, %v", b, err)
	}
}
