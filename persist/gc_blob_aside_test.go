package persist

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// agedBlob puts content into f's shared blob directory, dated past
// SharedBlobGrace and named by no record, and returns its digest and
// file.
func agedBlob(t *testing.T, f *fixture, content string) (string, string) {
	t.Helper()
	dg, _, err := f.e.blobs.Put(strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := f.e.blobs.Path(dg)
	old := time.Now().Add(-72 * time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	return dg, p
}

// bothMoves runs fn with gc's moves by renameat2 (RENAME_NOREPLACE), then
// by link and unlink, as on NFS, which takes no rename flags.
func bothMoves(t *testing.T, fn func(t *testing.T)) {
	t.Run("rename", fn)
	t.Run("link then unlink as on NFS", func(t *testing.T) {
		setHook(t, &renameNoReplace, func(int, string, int, string) error { return unix.EINVAL })
		fn(t)
	})
}

// setHook sets *hook to fn for the test.
func setHook[T any](t *testing.T, hook *T, fn T) {
	old := *hook
	*hook = fn
	t.Cleanup(func() { *hook = old })
}

// asideDirs opens f's blob directory's sha256/ and tmp/ for the test.
func asideDirs(t *testing.T, f *fixture) (d, tmp *os.File) {
	t.Helper()
	d, tmp, err := f.e.blobs.openAsideDirs()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); tmp.Close() })
	return d, tmp
}

// shortenAside truncates to n bytes the copy of blob name gc moved aside.
func shortenAside(t *testing.T, f *fixture, name string, n int) {
	t.Helper()
	ms, _ := filepath.Glob(filepath.Join(f.e.blobs.dir, "tmp", asidePrefix+name+".*"))
	if len(ms) != 1 {
		t.Fatalf("copies aside of %s: %q", name, ms)
	}
	if err := os.Truncate(ms[0], int64(n)); err != nil {
		t.Fatal(err)
	}
}

// noneAside fails if gc left a blob aside in the blob directory's tmp/.
func noneAside(t *testing.T, f *fixture) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(f.e.blobs.dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), asidePrefix) {
			t.Errorf("left aside: tmp/%s", ent.Name())
		}
	}
}

// A close on h2 re-uses an old, unreferenced blob (Put renews its time)
// just after h1's gc found it old: gc puts it back instead of removing
// it, and h2's record can name it. Before, gc removed it.
func TestGCPutsBackABlobRenewedMeanwhile(t *testing.T) {
	bothMoves(t, testGCPutsBackABlobRenewedMeanwhile)
}

func testGCPutsBackABlobRenewedMeanwhile(t *testing.T) {
	h1, h2 := fleetFixtures(t)
	const content = "the letter h2 is closing\n"
	dg, p := agedBlob(t, h1, content)
	name := filepath.Base(p)
	renewed := false
	setHook(t, &testHookGCBlob, func(step, n string) {
		if step == "checked" && n == name && !renewed {
			renewed = true
			if got, _, err := h2.e.blobs.Put(strings.NewReader(content)); err != nil || got != dg {
				t.Errorf("h2's Put meanwhile: %s, %v", got, err)
			}
		}
	})
	freed, err := h1.e.GC(h1.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !renewed {
		t.Fatal("gc never came to the blob")
	}
	if slices.Contains(freed.Blobs, dg) {
		t.Errorf("gc reports the renewed blob removed")
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != content {
		t.Fatalf("the renewed blob after gc: %q, %v", b, err)
	}
	noneAside(t, h1)
}

// h2's Put finds the blob gone because h1's gc moved it aside in between:
// before its time is renewed (Put found it in place a moment before),
// or before Put looks. Either way Put writes it anew and the blob is in
// place when Put returns. Before, the first failed the close ("renew its
// time: no such file or directory").
func TestPutWritesAnewABlobGCTookMeanwhile(t *testing.T) {
	bothMoves(t, testPutWritesAnewABlobGCTookMeanwhile)
}

func testPutWritesAnewABlobGCTookMeanwhile(t *testing.T) {
	h1, h2 := fleetFixtures(t)
	aside := func(name string) {
		d, tmp := asideDirs(t, h1)
		if removed, err := h1.e.gcBlobAside(d, tmp, name); err != nil || !removed {
			t.Fatalf("gc of the old blob: removed %v, %v", removed, err)
		}
	}
	for _, size := range []int{100, 200 << 10} { // held in memory, and not
		content := bytes.Repeat([]byte{byte(size)}, size)
		sum := sha256.Sum256(content)
		name := hex.EncodeToString(sum[:])
		_, p := agedBlob(t, h1, string(content))
		setHook(t, &testHookBlobReused, func(string) { aside(name) })
		dg, _, err := h2.e.blobs.Put(bytes.NewReader(content))
		testHookBlobReused = nil
		if err != nil || dg != "sha256:"+name {
			t.Fatalf("%d bytes: h2's Put while gc took the blob: %s, %v", size, dg, err)
		}
		if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, content) {
			t.Fatalf("%d bytes: the blob after Put: %d bytes, %v", size, len(b), err)
		}
		noneAside(t, h1)
	}
}

// A gc killed while a blob was aside leaves tmp/gc-HEX.N; a record may
// name the blob (a close renewed it meanwhile). The first command that
// misses the blob puts it back (here h2's open, building its layer), and
// so does the next gc on any host, which then keeps it while a record
// names it.
func TestGCRestoresABlobLeftAside(t *testing.T) {
	for _, first := range []string{"open", "gc"} {
		t.Run(first, func(t *testing.T) {
			h1, h2 := fleetFixtures(t)
			root := h1.open()
			write(t, root, "/home/user/Documents/letter.txt", "named by a record\n", 0o644)
			h1.close()
			sum := sha256.Sum256([]byte("named by a record\n"))
			name := hex.EncodeToString(sum[:])
			p := filepath.Join(h1.e.blobs.dir, "sha256", name)
			if err := os.Rename(p, filepath.Join(h1.e.blobs.dir, "tmp", asidePrefix+name+".7")); err != nil {
				t.Fatal(err)
			}
			if first == "gc" {
				if _, err := h2.e.GC(h2.ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(p); err != nil {
					t.Fatalf("the blob left aside, after the next gc: %v", err)
				}
			}
			root2 := h2.open()
			if b, err := os.ReadFile(filepath.Join(root2, "home/user/Documents/letter.txt")); err != nil || string(b) != "named by a record\n" {
				t.Fatalf("the letter on h2: %q, %v", b, err)
			}
			h2.close()
			if _, err := h2.e.GC(h2.ctx); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(p); err != nil || string(b) != "named by a record\n" {
				t.Fatalf("the blob left aside, after the open and gc: %q, %v", b, err)
			}
			noneAside(t, h2)
		})
	}
}

// The blob renewed before gc moved it aside, and written anew by another
// close while it was aside (or left short there by a crash before that
// close synced it): gc's put-back keeps whichever copy holds the right
// bytes.
func TestGCPutBackKeepsTheGoodCopy(t *testing.T) { bothMoves(t, testGCPutBackKeepsTheGoodCopy) }

func testGCPutBackKeepsTheGoodCopy(t *testing.T) {
	for _, resident := range []string{"written anew", "short", "aside short"} {
		t.Run(resident, func(t *testing.T) {
			h1, h2 := fleetFixtures(t)
			const content = "closed twice meanwhile\n"
			dg, p := agedBlob(t, h1, content)
			name := filepath.Base(p)
			steps := ""
			setHook(t, &testHookGCBlob, func(step, n string) {
				if n != name {
					return
				}
				steps += step + " "
				switch {
				case step == "checked" || step == "aside" && resident != "short":
					if _, _, err := h2.e.blobs.Put(strings.NewReader(content)); err != nil {
						t.Errorf("h2's Put at %s: %v", step, err)
					}
					if step == "aside" && resident != "written anew" {
						shortenAside(t, h1, name, len(content)-5)
					}
				case step == "aside":
					if err := os.WriteFile(p, []byte(content[:5]), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			})
			freed, err := h1.e.GC(h1.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if steps != "checked aside judged " || slices.Contains(freed.Blobs, dg) {
				t.Fatalf("gc's steps %q, freed %v", steps, freed.Blobs)
			}
			if b, err := os.ReadFile(p); err != nil || string(b) != content {
				t.Fatalf("the blob after gc: %q, %v", b, err)
			}
			noneAside(t, h1)
		})
	}
}

// Two hosts' gcs at once: h1's gc moved the old blob aside and judged it
// old, and stalls before it removes it; h2's gc puts it back (it cannot
// tell a killed gc's leftover from a running one), a close re-uses the
// blob, and h2's gc moves it aside again and judges it renewed; h1's gc
// then removes what it moved aside, and h2's puts the blob back. Were
// both gcs' aside names the same, h1 would remove h2's and the close's
// blob would be lost.
func TestTwoGCsAndARenewal(t *testing.T) { bothMoves(t, testTwoGCsAndARenewal) }

func testTwoGCsAndARenewal(t *testing.T) {
	h1, h2 := fleetFixtures(t)
	const content = "two gcs and a close\n"
	dg, p := agedBlob(t, h1, content)
	name := filepath.Base(p)
	var mu sync.Mutex
	var trace []string
	h1Judged, releaseH1, h1Done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	setHook(t, &testHookGCBlob, func(step, n string) {
		if n != name {
			return
		}
		mu.Lock()
		who := "h1"
		for _, s := range trace {
			if s == "h1 "+step {
				who = "h2" // h1's gc reaches each step once, first
			}
		}
		trace = append(trace, who+" "+step)
		mu.Unlock()
		switch who + " " + step {
		case "h1 judged":
			close(h1Judged)
			<-releaseH1
		case "h2 checked":
			if _, _, err := h1.e.blobs.Put(strings.NewReader(content)); err != nil {
				t.Errorf("the close's Put: %v", err)
			}
		case "h2 judged":
			close(releaseH1)
			<-h1Done
		}
	})
	var freed1 *Freed
	var err1 error
	go func() {
		defer close(h1Done)
		freed1, err1 = h1.e.GC(h1.ctx)
	}()
	select {
	case <-h1Judged:
	case <-h1Done:
		t.Fatalf("h1's gc ended before it judged the blob: %v", err1)
	}
	if _, err := h2.e.GC(h2.ctx); err != nil {
		t.Fatal(err)
	}
	if err1 != nil {
		t.Fatal(err1)
	}
	if got := strings.Join(trace, ", "); got != "h1 checked, h1 aside, h1 judged, h2 checked, h2 aside, h2 judged" {
		t.Fatalf("the two gcs' steps: %s", got)
	}
	if slices.Contains(freed1.Blobs, dg) {
		t.Errorf("h1's gc reports the blob removed")
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != content {
		t.Fatalf("the blob the close re-used, after both gcs: %q, %v", b, err)
	}
	noneAside(t, h1)
}

// Names planted in the shared directory that look like gc's: a copy
// "aside" whose blob name is a directory, a directory named as a copy
// aside, another name. gc and opens go on, leave them, and take nothing.
func TestGCLeavesPlantedAsideNames(t *testing.T) {
	h1, _ := fleetFixtures(t)
	h := strings.Repeat("ab", 32)
	dir := h1.e.blobs.dir
	planted := []string{"sha256/" + h + "/", "tmp/" + asidePrefix + h + ".1", "tmp/" + asidePrefix + strings.Repeat("cd", 32) + ".2/", "tmp/" + asidePrefix + "notes"}
	plant(t, dir, planted...)
	_, p := agedBlob(t, h1, "an old unreferenced blob\n")
	for range 2 {
		freed, err := h1.e.GC(h1.ctx)
		if err != nil {
			t.Fatalf("gc with planted names: %v", err)
		}
		if len(freed.Blobs) > 1 {
			t.Fatalf("gc freed %v", freed.Blobs)
		}
	}
	if _, err := os.Stat(p); err == nil {
		t.Error("the old unreferenced blob is still there")
	}
	mustExist(t, dir, planted...)
}

// A put-back that finds the blob's name and the copy aside to be one file
// (another put-back by link and unlink under way, on NFS, or one of two
// aside names of the file) removes the aside name: the blob is in place,
// and the other put-back's unlink finds the name gone, as it tolerates.
func TestPutBackOfACopyAsideInPlace(t *testing.T) {
	h1, _ := fleetFixtures(t)
	const content = "moved by link, then unlink\n"
	_, p := agedBlob(t, h1, content)
	name := filepath.Base(p)
	aside := filepath.Join(h1.e.blobs.dir, "tmp", asideName(name))
	if err := os.Link(p, aside); err != nil {
		t.Fatal(err)
	}
	d, tmp := asideDirs(t, h1)
	if err := h1.e.blobs.putBack(d, tmp, filepath.Base(aside)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != content {
		t.Fatalf("the blob after the put-back: %q, %v", b, err)
	}
	noneAside(t, h1)
}

// Moved by link and unlink, one blob file can have two names aside: a
// restore links gc-HEX.1 back in place, and before it unlinks gc-HEX.1 a
// second gc moves the blob aside again, to gc-HEX.2, while the first gc
// puts back gc-HEX.1 by link (the close renewed the blob). When the
// second gc puts back gc-HEX.2, the blob is in place under the same file:
// gc-HEX.2 goes. Before, it stayed aside for good, since no put-back of
// it was under way (TestGCAsideStress, about 1 in 100,000 rounds).
func TestGCPutBackOfASecondAsideName(t *testing.T) {
	bothMoves(t, testGCPutBackOfASecondAsideName)
}

func testGCPutBackOfASecondAsideName(t *testing.T) {
	dir := t.TempDir()
	b, err := NewBlobs(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{blobs: b, blobsShared: true, clock: time.Now}
	const content = "two names aside\n"
	dg, _, err := b.Put(strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := b.Path(dg)
	name := filepath.Base(p)
	old := time.Now().Add(-72 * time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(dir, "tmp", asidePrefix+name+".1")
	if err := os.Rename(p, first); err != nil { // the first gc's move aside
		t.Fatal(err)
	}
	if err := os.Link(first, p); err != nil { // a restore's put-back, its link
		t.Fatal(err)
	}
	setHook(t, &testHookGCBlob, func(step, n string) {
		if step != "aside" || n != name {
			return
		}
		now := time.Now() // the close's renewal, before the second gc looks
		if err := os.Chtimes(first, now, now); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(first, p); err != nil { // the first gc's put-back by link
			t.Fatal(err)
		}
		if err := os.Remove(first); err != nil { // the restore's unlink
			t.Fatal(err)
		}
	})
	d, tmp, err := b.openAsideDirs()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	defer tmp.Close()
	if removed, err := e.gcBlobAside(d, tmp, name); err != nil || removed {
		t.Fatalf("the second gc of the renewed blob: removed %v, %v", removed, err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != content {
		t.Fatalf("the blob after the second gc: %q, %v", got, err)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) > 0 {
		t.Fatalf("left in tmp/: %v", left)
	}
}
