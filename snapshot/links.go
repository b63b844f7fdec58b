package snapshot

import (
	"path"
	"sort"
	"strings"
)

// maxLinkHops is how many nested symlinks a resolution follows, as the
// kernel does (ELOOP past 40). A deeper chain is refused rather than
// resolved: it serves no real image.
const maxLinkHops = 40

// linkChecker resolves the symlinks of an imported tree, chains included,
// as a host program outside the image would (the image root is a plain
// directory, not "/"), and reports one that climbs above the image root.
// It works on the archive's own record of its symlinks: the tree starts
// empty, so every symlink in it came from the archive. Every other name is
// taken for a directory, which can only find more escapes, not fewer.
// Absolute targets start again at the image root (they are read inside it).
//
// Names are nodes of a trie (node 0 is the root), so one step costs the
// length of one component, never of the whole path: the work is linear in
// the length of the names and targets.
type linkChecker struct {
	parent   []int              // node → its parent (the root's is 0)
	children map[childKey]int   // (node, component) → node
	target   map[int]string     // link node → target
	memo     map[int]linkResult // link node → where it leads
}

type childKey struct {
	dir  int
	name string
}

type linkResult struct {
	dir     int // the node the link leads to
	escapes bool
	tooLong bool // a chain deeper than maxLinkHops
	dead    bool // a loop: resolves nowhere, so nowhere out
}

// escaping returns the first symlink (in name order) whose resolution
// climbs above the root or follows too long a chain, and why; or "".
func escaping(links map[string]string) (name, why string) {
	c := &linkChecker{parent: []int{0}, children: map[childKey]int{}, target: map[int]string{}, memo: map[int]linkResult{}}
	names := make([]string, 0, len(links))
	ids := map[string]int{}
	for n, t := range links {
		id := 0
		for _, comp := range strings.Split(n, "/") {
			id = c.child(id, comp)
		}
		c.target[id] = t
		ids[n] = id
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		switch r := c.resolve(ids[n], 0); {
		case r.escapes:
			return n, "leads outside the image through a chain of symlinks"
		case r.tooLong:
			return n, "starts a chain of more than 40 symlinks"
		}
	}
	return "", ""
}

// child returns the node of comp in dir, making it if needed.
func (c *linkChecker) child(dir int, comp string) int {
	k := childKey{dir, comp}
	if id, ok := c.children[k]; ok {
		return id
	}
	id := len(c.parent)
	c.parent = append(c.parent, dir)
	c.children[k] = id
	return id
}

// resolve follows the link node id; hops counts the links followed to get
// here.
func (c *linkChecker) resolve(id, hops int) linkResult {
	if r, ok := c.memo[id]; ok {
		return r
	}
	if hops >= maxLinkHops {
		return linkResult{tooLong: true}
	}
	c.memo[id] = linkResult{dead: true} // a loop back here resolves nowhere
	target := c.target[id]
	dir := c.parent[id]
	if path.IsAbs(target) {
		dir = 0
	}
	r := c.walk(dir, target, hops+1)
	c.memo[id] = r
	return r
}

// walk resolves rel from the directory node dir.
func (c *linkChecker) walk(dir int, rel string, hops int) linkResult {
	for _, comp := range strings.Split(rel, "/") {
		switch comp {
		case "", ".":
			continue
		case "..":
			if dir == 0 {
				return linkResult{escapes: true}
			}
			dir = c.parent[dir]
			continue
		}
		next := c.child(dir, comp)
		if _, ok := c.target[next]; !ok {
			dir = next
			continue
		}
		r := c.resolve(next, hops)
		if r.escapes || r.tooLong || r.dead {
			return r
		}
		dir = r.dir
	}
	return linkResult{dir: dir}
}
