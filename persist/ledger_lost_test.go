package persist

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
)

// TestPersistedListIsJSON: persistedList writes what encoding/json writes
// for each lostFile, names not valid UTF-8 with their exact bytes, and
// leaves out what has no content to keep; readPersistedList reads it back.
func TestPersistedListIsJSON(t *testing.T) {
	sum := &CloseSummary{Persisted: []PersistedFile{
		{Path: "/home/user/a \"b\".txt", Type: change.TypeFile, Kind: change.KindModify, Size: 3, Digest: "sha256:" + string(bytes.Repeat([]byte("a"), 64)),
			mode: 0o640, uid: 1000, gid: 100, mtime: time.Unix(1764400000, 123456789)},
		{Path: "/home/user/\xff.txt", PathBytes: []byte("/home/user/\xff.txt"), Type: change.TypeFile, Kind: change.KindAdd, Size: 0, Digest: "sha256:" + string(bytes.Repeat([]byte("b"), 64))},
		{Path: "/home/user/gone", Type: change.TypeFile, Kind: change.KindDelete},
		{Path: "/home/user/link", Type: change.TypeSymlink, Kind: change.KindAdd, Digest: "sha256:x"},
		{Path: "/home/user/dir", Type: change.TypeDir, Kind: change.KindAdd},
	}}
	got := persistedList(sum)
	var want []byte
	for _, p := range sum.Persisted[:2] {
		var mtime int64
		if !p.mtime.IsZero() {
			mtime = p.mtime.UnixNano()
		}
		line, err := json.Marshal(lostFile{Path: p.Path, PathBytes: p.PathBytes, Size: p.Size, Digest: p.Digest, Mode: p.mode, UID: p.uid, GID: p.gid, Mtime: mtime})
		if err != nil {
			t.Fatal(err)
		}
		want = append(append(want, line...), '\n')
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("persistedList:\n%s\nwant (encoding/json):\n%s", got, want)
	}
	dir := t.TempDir()
	if err := writeLazy(dir, persistedListFile, got); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, persistedListFile)
	list, err := readPersistedList(p)
	if err != nil || len(list) != 2 || list[0].Path != sum.Persisted[0].Path || list[1].Path != "/home/user/\xff.txt" || list[0].Size != 3 || list[1].Digest != sum.Persisted[1].Digest ||
		list[0].Mode != 0o640 || list[0].UID != 1000 || list[0].GID != 100 || list[0].Mtime != 1764400000123456789 || list[1].Mtime != 0 {
		t.Fatalf("read back %+v (%v)", list, err)
	}
	if l, err := readPersistedList(p + ".none"); l != nil || err != nil {
		t.Fatalf("a missing list reads as %v, %v; want nil, nil", l, err)
	}
}
