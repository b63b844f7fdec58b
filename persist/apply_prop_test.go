package persist

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// The model-based test of applying persisted state (issue 11, class 2).
// Random sessions (add, modify, delete, symlink, directory replace, a
// directory's chmod) and
// decisions (approve, reject, revoke --purge) run on a real sandbox; after
// each, the next open's root must equal a simple model, and nothing may be
// written outside the area the exception covers (the rest of the root, the
// image, a host directory that links point at).
//
// The model: of the records in effect, the newest per path; a path goes
// when an ancestor in the state is newer (a delete, a file or a link, or a
// new directory that starts empty, not one whose mode alone changed) or is
// not a directory; the rest is laid
// over the image in path order, missing parents created 0755, for deletes
// too (a path under a file of the image is skipped).
// A second check needs no records: right after a close (review after), the
// next open shows exactly the tree the session ended with.
//
// SPILLWAY_PROP_SEED and SPILLWAY_PROP_STEPS choose the run (defaults: seed
// 1, 150 steps, under a minute); see docs/crash-safety.md for a long run.

const propArea = "/home/user/Documents"

// node is one entry of a tree as the test compares it.
type node struct {
	typ, data string // data: content digest of a file, target of a link
	mode      uint32 // permission bits (not for links)
}

func (n node) String() string { return fmt.Sprintf("%s %04o %s", n.typ, n.mode, n.data) }

type tree map[string]node

func propEnvInt(t *testing.T, name string, def int64) int64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

func TestApplyStateModel(t *testing.T) {
	seed := propEnvInt(t, "SPILLWAY_PROP_SEED", 1)
	steps := int(propEnvInt(t, "SPILLWAY_PROP_STEPS", 150))
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	p := newProp(t, seed)
	t.Logf("seed %d, %d steps (rerun: SPILLWAY_PROP_SEED=%d SPILLWAY_PROP_STEPS=%d)", seed, steps, seed, steps)
	for i := 0; i < steps && !t.Failed(); i++ {
		p.step(i)
	}
	if t.Failed() {
		t.Logf("actions:\n%s", strings.Join(p.log, "\n"))
	}
	t.Logf("%d actions; at most %d orphaned records at once", len(p.log), p.maxOrphans)
	if steps >= 100 && p.maxOrphans == 0 && !t.Failed() {
		t.Errorf("no step left a record under a non-directory: the run missed the case it is about")
	}
	p.finalChecks()
}

type prop struct {
	t       *testing.T
	f       *fixture
	rnd     *rand.Rand
	hostDir string   // a host directory links point at: stays empty
	image   []string // the image's listing outside the area
	x       string   // the current exception
	after   bool     // the current exception is review after
	log     []string
	// maxOrphans is the most records the model left out under a
	// non-directory at one open: the run met the case it is about.
	maxOrphans int
}

func newProp(t *testing.T, seed int64) *prop {
	f := newFixture(t, snapshot.KindOverlay)
	p := &prop{t: t, f: f, rnd: rand.New(rand.NewSource(seed)), hostDir: filepath.Join(f.dir, "host-dir")}
	if err := os.Mkdir(p.hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.image = outsideArea(treeListing(t, busyboxRootfs(t)))
	p.addException(true)
	return p
}

func (p *prop) logf(format string, args ...any) { p.log = append(p.log, fmt.Sprintf(format, args...)) }

func (p *prop) addException(after bool) {
	review := change.ReviewAfter
	if !after {
		review = change.ReviewBefore
	}
	p.x = p.f.except(func(x *exceptions.Exception) {
		x.AllowSymlinks, x.Forced, x.Review = true, true, review
	}, propArea+"/**")
	p.after = after
	p.logf("exception %s review %s", p.x, review)
}

// step makes a few decisions, opens and checks the root against the model,
// runs a session of random changes and closes.
func (p *prop) step(i int) {
	t := p.t
	for n := p.rnd.Intn(3); n > 0; n-- {
		p.decide()
	}
	root := p.f.open()
	got := readArea(t, root)
	want, orphans := p.model()
	p.maxOrphans = max(p.maxOrphans, orphans)
	if !sameTree(got, want) {
		t.Errorf("step %d: root differs from the model:\n%s", i, treeDiff(want, got))
	}
	p.checkOutside(root)
	if problems, err := p.f.e.Check(p.f.ctx); err != nil {
		t.Fatal(err)
	} else if len(problems) != orphans {
		t.Errorf("step %d: check found %d problems, the model %d orphans: %q", i, len(problems), orphans, problems)
	}
	end := p.session(root, got)
	p.f.close()
	if p.after && !t.Failed() {
		// With nothing decided in between, the next open shows the tree
		// the session ended with.
		root = p.f.open()
		if got := readArea(t, root); !sameTree(got, end) {
			t.Errorf("step %d: the open after a close differs from the session's end:\n%s", i, treeDiff(end, got))
		}
		p.f.close()
	}
}

// decide approves, rejects or purges, or does nothing.
func (p *prop) decide() {
	pending, err := p.f.e.ReviewList(context.Background(), "docs")
	if err != nil {
		p.t.Fatal(err)
	}
	var dirs []uint64 // pending directory records: rejecting them alone makes orphans
	for _, rec := range pending {
		if rec.Type == "dir" {
			dirs = append(dirs, rec.ID)
		}
	}
	switch r := p.rnd.Intn(10); {
	case r < 7 && len(pending) > 0:
		var ids []uint64
		for _, rec := range pending {
			if p.rnd.Intn(3) == 0 {
				ids = append(ids, rec.ID)
			}
		}
		if len(ids) == 0 {
			ids = append(ids, pending[p.rnd.Intn(len(pending))].ID)
		}
		switch {
		case r < 3:
			p.logf("approve %v", ids)
			_, err = p.f.e.Approve(context.Background(), ids, "")
		case r < 5 && len(dirs) > 0:
			p.logf("reject the directories %v", dirs)
			_, err = p.f.e.Reject(context.Background(), dirs, "no")
		default:
			p.logf("reject %v", ids)
			_, err = p.f.e.Reject(context.Background(), ids, "no")
		}
	case r == 9:
		p.logf("revoke --purge %s", p.x)
		if _, err = p.f.e.RevokeException(context.Background(), p.x, "purge", true); err == nil {
			p.addException(p.rnd.Intn(3) != 0)
		}
	}
	if err != nil {
		p.t.Fatal(err)
	}
}

// names are few, so that sessions often meet what earlier ones left.
var propNames = []string{"a", "b", "c", "etc", "passwd"}

// session makes 1 to 4 random changes under the area of the open root, whose
// area is cur, and returns the area as the session leaves it.
func (p *prop) session(root string, cur tree) tree {
	t := p.t
	for n := 1 + p.rnd.Intn(4); n > 0; n-- {
		var dirs, entries []string
		for q, nd := range cur {
			if nd.typ == "dir" {
				dirs = append(dirs, q)
			}
			if q != propArea {
				entries = append(entries, q)
			}
		}
		sort.Strings(dirs)
		sort.Strings(entries)
		target := path.Join(dirs[p.rnd.Intn(len(dirs))], propNames[p.rnd.Intn(len(propNames))])
		if len(entries) > 0 && p.rnd.Intn(2) == 0 {
			target = entries[p.rnd.Intn(len(entries))]
		}
		full := filepath.Join(root, target)
		op := []string{"file", "file", "delete", "symlink", "dir", "chmod"}[p.rnd.Intn(6)]
		if op == "chmod" {
			// A directory's new mode, nothing else: its record keeps what
			// the directory holds.
			d := dirs[p.rnd.Intn(len(dirs))]
			mode := []os.FileMode{0o700, 0o750, 0o755}[p.rnd.Intn(3)]
			p.logf("session: chmod %o %s", mode, d)
			if err := os.Chmod(filepath.Join(root, d), mode); err != nil {
				t.Fatal(err)
			}
			cur = readArea(t, root)
			continue
		}
		p.logf("session: %s %s", op, target)
		must := func(err error) {
			if err != nil {
				t.Fatalf("%s %s: %v", op, target, err)
			}
		}
		// RemoveAll never follows a link, and every parent is a directory
		// of cur: the test itself never writes through a link.
		must(os.RemoveAll(full))
		switch op {
		case "file":
			must(os.WriteFile(full, []byte(fmt.Sprintf("content %d\n", p.rnd.Intn(4))), 0o644))
		case "symlink":
			targets := []string{"../../../etc", "/etc", p.hostDir, "readme.txt", "a", ".."}
			must(os.Symlink(targets[p.rnd.Intn(len(targets))], full))
		case "dir":
			must(os.Mkdir(full, 0o755))
			for k := p.rnd.Intn(3); k > 0; k-- {
				must(os.WriteFile(filepath.Join(full, propNames[p.rnd.Intn(len(propNames))]), []byte("in a new dir\n"), 0o644))
			}
		}
		cur = readArea(t, root)
	}
	return cur
}

// model computes the area the next open must show from the records, and
// counts the records left out under a non-directory.
func (p *prop) model() (tree, int) {
	var recs []*store.Record
	err := p.f.e.store.View(func(tx *store.Tx) error {
		return tx.ForEachRecord(context.Background(), "docs", func(r *store.Record) error {
			inEffect := !r.Purged && (r.Status == change.StatusApproved ||
				r.Status == change.StatusPending && r.Review != change.ReviewBefore)
			if inEffect {
				recs = append(recs, r)
			}
			return nil
		})
	})
	if err != nil {
		p.t.Fatal(err)
	}
	newest := map[string]*store.Record{}
	for _, r := range recs {
		if old, ok := newest[r.Path]; !ok || r.ID > old.ID {
			newest[r.Path] = r
		}
	}
	state := map[string]*store.Record{}
	orphans := 0
	for q, r := range newest {
		keep := true
		for a := path.Dir(q); a != "/"; a = path.Dir(a) {
			if anc, ok := newest[a]; ok && anc.ID > r.ID && replacing(recs, anc).ID > r.ID {
				keep = false
				break
			}
		}
		if !keep {
			continue
		}
		for a := path.Dir(q); a != "/"; a = path.Dir(a) {
			// an ancestor newer than anc would have dropped anc, not r:
			// only ancestors that are themselves kept count.
			if anc, ok := newest[a]; ok && (anc.Kind == change.KindDelete || anc.Type != "dir") && !replaced(recs, newest, anc) {
				keep = false
				orphans++
				break
			}
		}
		if keep {
			state[q] = r
		}
	}
	out := tree{propArea: {typ: "dir", mode: 0o755}, propArea + "/readme.txt": {typ: "file", mode: 0o644, data: digestOf([]byte("A document that came with the image.\n"))}}
	paths := make([]string, 0, len(state))
	for q := range state {
		paths = append(paths, q)
	}
	sort.Strings(paths)
	for _, q := range paths {
		r := state[q]
		for q2 := range out {
			if r.Kind == change.KindDelete || r.Type != "dir" {
				if strings.HasPrefix(q2, q+"/") {
					delete(out, q2)
				}
			}
		}
		if underFile(out, q) {
			continue // a file of the image is in the way: open skips it
		}
		for a := path.Dir(q); q != propArea && a != "/" && a != propArea; a = path.Dir(a) {
			if _, ok := out[a]; !ok {
				out[a] = node{typ: "dir", mode: 0o755}
			}
		}
		if r.Kind == change.KindDelete {
			delete(out, q)
			continue
		}
		switch r.Type {
		case "dir":
			out[q] = node{typ: "dir", mode: r.Mode & 0o777}
		case "symlink":
			out[q] = node{typ: "symlink", data: r.Link}
		case "file":
			out[q] = node{typ: "file", mode: r.Mode & 0o777, data: r.Digest}
		}
	}
	return out, orphans
}

// replacing returns the record whose effect anc has on what lies beneath
// it: anc itself, or for a directory whose mode or owner alone changed
// (MetaOnly), the newest record in effect of its path before it that is
// not (an empty record, id 0: the image's directory, which replaces
// nothing).
func replacing(recs []*store.Record, anc *store.Record) *store.Record {
	if !anc.MetaOnly {
		return anc
	}
	base := &store.Record{}
	for _, h := range recs {
		if h.Path == anc.Path && h.ID < anc.ID && !h.MetaOnly && h.ID > base.ID {
			base = h
		}
	}
	return base
}

// underFile says whether an ancestor of q in t is not a directory.
func underFile(t tree, q string) bool {
	for a := path.Dir(q); a != "/"; a = path.Dir(a) {
		if n, ok := t[a]; ok && n.typ != "dir" {
			return true
		}
	}
	return false
}

// replaced says whether a newer ancestor in the state drops r.
func replaced(recs []*store.Record, newest map[string]*store.Record, r *store.Record) bool {
	for a := path.Dir(r.Path); a != "/"; a = path.Dir(a) {
		if anc, ok := newest[a]; ok && anc.ID > r.ID && replacing(recs, anc).ID > r.ID {
			return true
		}
	}
	return false
}

// readArea lists the area of an open root, never following a link.
func readArea(t *testing.T, root string) tree {
	t.Helper()
	out := tree{}
	base := filepath.Join(root, propArea)
	err := filepath.WalkDir(base, func(q string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(q)
		if err != nil {
			return err
		}
		rel := propArea + strings.TrimPrefix(q, base)
		switch {
		case fi.IsDir():
			out[rel] = node{typ: "dir", mode: uint32(fi.Mode().Perm())}
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(q)
			if err != nil {
				return err
			}
			out[rel] = node{typ: "symlink", data: l}
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(q)
			if err != nil {
				return err
			}
			out[rel] = node{typ: "file", mode: uint32(fi.Mode().Perm()), data: digestOf(b)}
		default:
			out[rel] = node{typ: fi.Mode().Type().String()}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func sameTree(a, b tree) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// treeDiff lists, sorted, the entries of want that got lacks or holds
// otherwise ("- ") and those of got that want lacks or holds otherwise
// ("+ ").
func treeDiff[V interface {
	comparable
	fmt.Stringer
}](want, got map[string]V) string {
	var d []string
	for k, v := range want {
		if w, ok := got[k]; !ok || w != v {
			d = append(d, fmt.Sprintf("- %s %s", k, v))
		}
	}
	for k, v := range got {
		if w, ok := want[k]; !ok || w != v {
			d = append(d, fmt.Sprintf("+ %s %s", k, v))
		}
	}
	sort.Strings(d)
	return strings.Join(d, "\n")
}

// outsideArea keeps the listing lines of entries outside the area.
func outsideArea(listing []string) []string {
	rel := strings.TrimPrefix(propArea, "/")
	return slices.DeleteFunc(withoutRoot(listing), func(l string) bool {
		name, _, _ := strings.Cut(l, " ")
		return name == rel || strings.HasPrefix(name, rel+"/")
	})
}

// checkOutside asserts that nothing changed outside the area: the rest of
// the root is the image, the host directory is empty, the canary intact.
func (p *prop) checkOutside(root string) {
	t := p.t
	if got := outsideArea(treeListing(t, root)); !slices.Equal(got, p.image) {
		t.Errorf("root outside the area differs from the image: %s", diffListings(p.image, got))
	}
	if ents, err := os.ReadDir(p.hostDir); err != nil || len(ents) != 0 {
		t.Errorf("host directory: %v %v", ents, err)
	}
	if b, err := os.ReadFile(p.f.canaryPath); err != nil || string(b) != string(p.f.canary) {
		t.Errorf("host canary changed: %v", err)
	}
}

// finalChecks: the image snapshot never changed, and nothing of the host
// reached the store.
func (p *prop) finalChecks() {
	var img *store.Image
	p.f.e.store.View(func(tx *store.Tx) (err error) { img, err = tx.GetImage("base"); return })
	if got := withoutRoot(treeListing(p.t, img.Dir)); !slices.Equal(got, withoutRoot(treeListing(p.t, busyboxRootfs(p.t)))) {
		p.t.Errorf("image snapshot changed")
	}
	p.f.assertNoCanary()
}
