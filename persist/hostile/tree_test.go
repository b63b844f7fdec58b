package hostile

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
)

func TestTreeChanges(t *testing.T) {
	d := t.TempDir()
	base, tree := d+"/base", d+"/tree"
	write(t, base+"/same", "same")
	write(t, base+"/content", "aaaa")
	write(t, base+"/chmod", "c")
	write(t, base+"/touch", "t")
	write(t, base+"/gone", "g")
	write(t, base+"/gonedir/a", "a")
	write(t, base+"/gonedir/b/c", "c")
	write(t, base+"/keepdir/x", "x")
	write(t, base+"/wasfile", "w")
	write(t, base+"/wasdir/y", "y")
	must(t, os.Symlink("target1", base+"/link"))
	must(t, os.Symlink("/abs/same", base+"/link2"))
	if out, err := exec.Command("cp", "-a", base, tree).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	if got, _ := treeLines(t, tree, base); len(got) != 0 {
		t.Fatalf("copy differs: %v", got)
	}
	write(t, tree+"/content", "bbbbbb")
	must(t, os.Chmod(tree+"/chmod", 0o600))
	must(t, os.Chtimes(tree+"/touch", time.Now(), time.Unix(1, 5)))
	must(t, os.Remove(tree+"/gone"))
	must(t, os.RemoveAll(tree+"/gonedir"))
	write(t, tree+"/keepdir/new/n", "n")
	must(t, os.Remove(tree+"/wasfile"))
	write(t, tree+"/wasfile/inner", "i")
	must(t, os.RemoveAll(tree+"/wasdir"))
	write(t, tree+"/wasdir", "now a file")
	must(t, os.Remove(tree+"/link"))
	must(t, os.Symlink("target2", tree+"/link"))
	got, _ := treeLines(t, tree, base)
	sameLines(t, got, []string{
		`modify file "/chmod"`,
		`modify file "/content"`,
		`delete file "/gone"`,
		`delete dir "/gonedir"`,
		`add dir "/keepdir/new"`,
		`add file "/keepdir/new/n"`,
		`modify symlink "/link" -> "target2"`,
		`modify file "/touch"`,
		`modify file "/wasdir"`,
		`modify dir "/wasfile"`,
		`add file "/wasfile/inner"`,
	})
}

// TreeChanges reports a directory in both trees whose permission bits or
// owner changed, not one whose content alone did.
func TestTreeChangesDirModeAndOwner(t *testing.T) {
	d := t.TempDir()
	base, tree := d+"/base", d+"/tree"
	write(t, base+"/chmod/kept", "k")
	write(t, base+"/chown/kept", "k")
	write(t, base+"/holds/kept", "k")
	if out, err := exec.Command("cp", "-a", base, tree).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	must(t, os.Chmod(tree+"/chmod", 0o700))
	must(t, os.Chown(tree+"/chown", 1000, 1000))
	write(t, tree+"/holds/new", "n")
	got, all := treeLines(t, tree, base)
	sameLines(t, got, []string{
		`modify dir "/chmod"`,
		`modify dir "/chown"`,
		`add file "/holds/new"`,
	})
	if all[0].Below == nil || all[0].Below.Type != change.TypeDir {
		t.Errorf("below of /chmod: %+v", all[0].Below)
	}
}
