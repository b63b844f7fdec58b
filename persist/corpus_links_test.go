package persist

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/spillway/spillway/exceptions"
)

// assertOwnFile checks that p under root is a regular file of one link
// holding content.
func assertOwnFile(t *testing.T, root, p, content string) {
	t.Helper()
	full := filepath.Join(root, p)
	b, err := os.ReadFile(full)
	if err != nil || string(b) != content {
		t.Errorf("%s: %q %v, want %q", p, b, err, content)
		return
	}
	st, err := os.Lstat(full)
	if err != nil || !st.Mode().IsRegular() || st.Sys().(*syscall.Stat_t).Nlink != 1 {
		t.Errorf("%s: not a regular file of its own after reopen: %v %v", p, st, err)
	}
}

func TestCorpusHardLinkTrees(t *testing.T) { bothSnapshotters(t, corpusHardLinkTrees) }

// A cp -al tree and several names of one inode persist every name with the
// same bytes, each as a file of its own.
func corpusHardLinkTrees(t *testing.T, kind string) {
	f := newFixture(t, kind)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	want := map[string]string{}
	for i := range 5 {
		p := fmt.Sprintf("%s/src/d%d/f%d", docs, i%2, i)
		c := fmt.Sprintf("content %d\n", i)
		write(t, root, p, c, 0o644)
		want[p] = c
	}
	out, err := exec.Command("cp", "-al", filepath.Join(root, docs, "src"), filepath.Join(root, docs, "copy")).CombinedOutput()
	if err != nil {
		t.Fatalf("cp -al: %v %s", err, out)
	}
	for i := range 5 {
		want[fmt.Sprintf("%s/copy/d%d/f%d", docs, i%2, i)] = fmt.Sprintf("content %d\n", i)
	}
	write(t, root, docs+"/many/one", "one inode\n", 0o644)
	want[docs+"/many/one"] = "one inode\n"
	for _, n := range []string{"two", "three", "sub/four"} {
		os.MkdirAll(filepath.Join(root, docs, "many/sub"), 0o755)
		if err := os.Link(filepath.Join(root, docs, "many/one"), filepath.Join(root, docs, "many", n)); err != nil {
			t.Fatal(err)
		}
		want[docs+"/many/"+n] = "one inode\n"
	}
	sum := f.close()
	if len(sum.Refused) != 0 {
		t.Fatalf("refused: %+v", sum.Refused)
	}
	for p := range want {
		if !persisted(sum, "/"+p) {
			t.Errorf("%s not persisted", p)
		}
	}
	root = f.open()
	for p, c := range want {
		assertOwnFile(t, root, p, c)
	}
	// Each name is its own file: changing one leaves the others.
	write(t, root, docs+"/many/two", "changed\n", 0o644)
	f.close()
	root = f.open()
	assertOwnFile(t, root, docs+"/many/two", "changed\n")
	assertOwnFile(t, root, docs+"/many/one", "one inode\n")
}

func TestCorpusHardLinksChargeEachName(t *testing.T) {
	bothSnapshotters(t, corpusHardLinksChargeEachName)
}

// Each name of a linked file is charged against the quota: a file of 100
// bytes with four names uses 400 bytes and four files.
func corpusHardLinksChargeEachName(t *testing.T, kind string) {
	f := newFixture(t, kind)
	f.except(func(x *exceptions.Exception) { x.Limits = exceptions.Limits{MaxBytes: 250} }, "/home/user/Documents/**")
	f.except(func(x *exceptions.Exception) { x.Limits = exceptions.Limits{MaxFiles: 3} }, "/home/user/Work/**")
	root := f.open()
	body := string(make([]byte, 100))
	write(t, root, docs+"/a", body, 0o644)
	write(t, root, "home/user/Work/a", body, 0o644)
	for _, n := range []string{"b", "c", "d"} {
		if err := os.Link(filepath.Join(root, docs, "a"), filepath.Join(root, docs, n)); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(root, "home/user/Work/a"), filepath.Join(root, "home/user/Work", n)); err != nil {
			t.Fatal(err)
		}
	}
	sum := f.close()
	count := map[string]int{}
	for _, n := range []string{"a", "b", "c", "d"} {
		for _, p := range []string{"/" + docs + "/" + n, "/home/user/Work/" + n} {
			switch {
			case persisted(sum, p):
				count["persisted"]++
			case refusal(sum, p) == RefuseQuotaB:
				count[RefuseQuotaB]++
			case refusal(sum, p) == RefuseQuotaF:
				count[RefuseQuotaF]++
			default:
				t.Errorf("%s: neither persisted nor refused for quota", p)
			}
		}
	}
	// Documents: 2 names fit in 250 bytes; Work: 3 names fit in 3 files.
	if count["persisted"] != 5 || count[RefuseQuotaB] != 2 || count[RefuseQuotaF] != 1 {
		t.Fatalf("quota counts %v, want 5 persisted, 2 quota-bytes, 1 quota-files", count)
	}
}
