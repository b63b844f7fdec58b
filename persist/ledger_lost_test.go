package persist

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	if err := writeLazy(dir, "1.jsonl", got); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "1.jsonl")
	list, err := readPersistedList(p)
	if err != nil || len(list) != 2 || list[0].Path != sum.Persisted[0].Path || list[1].Path != "/home/user/\xff.txt" || list[0].Size != 3 || list[1].Digest != sum.Persisted[1].Digest ||
		list[0].Mode != 0o640 || list[0].UID != 1000 || list[0].GID != 100 || list[0].Mtime != 1764400000123456789 || list[1].Mtime != 0 {
		t.Fatalf("read back %+v (%v)", list, err)
	}
	if l, err := readPersistedList(p + ".none"); l != nil || err != nil {
		t.Fatalf("a missing list reads as %v, %v; want nil, nil", l, err)
	}
}

// BenchmarkPersistedList is what the committed note's list costs a close
// of 100,000 persisted files (docs/fleet.md): go test ./persist/ -run XXX
// -bench PersistedList -benchtime 5x.
func BenchmarkPersistedList(b *testing.B) {
	sum := &CloseSummary{}
	for i := range 100000 {
		sum.Persisted = append(sum.Persisted, PersistedFile{Path: fmt.Sprintf("/home/user/Documents/state/d%04d/f%07d.o", i/1000, i), Type: change.TypeFile, Kind: change.KindAdd, Size: 4096,
			Digest: fmt.Sprintf("sha256:%064x", i), mode: 0o644, uid: 1000, gid: 1000, mtime: time.Now()})
	}
	dir := b.TempDir()
	for b.Loop() {
		l := persistedList(sum)
		if err := writeLazy(dir, "1.jsonl", l); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(l))/1e6, "MB")
	}
}
