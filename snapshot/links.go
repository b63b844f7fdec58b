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
type linkChecker struct {
	links map[string]string // clean relative name → target
	memo  map[string]result // resolved links
}

type result struct {
	dir     []string // where the link leads: components below the root
	escapes bool
	tooLong bool // a chain deeper than maxLinkHops
	dead    bool // a loop: resolves nowhere, so nowhere out
}

// escaping returns the first symlink (in name order) whose resolution
// climbs above the root or follows too long a chain, and why; or "".
func escaping(links map[string]string) (name, why string) {
	c := &linkChecker{links: links, memo: map[string]result{}}
	names := make([]string, 0, len(links))
	for n := range links {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		switch r := c.resolve(n, 0); {
		case r.escapes:
			return n, "leads outside the image through a chain of symlinks"
		case r.tooLong:
			return n, "starts a chain of more than 40 symlinks"
		}
	}
	return "", ""
}

// resolve follows the link name; hops counts the links followed to get
// here.
func (c *linkChecker) resolve(name string, hops int) result {
	if r, ok := c.memo[name]; ok {
		return r
	}
	if hops >= maxLinkHops {
		return result{tooLong: true}
	}
	c.memo[name] = result{dead: true} // a loop back here resolves nowhere
	target := c.links[name]
	var dir []string
	if !path.IsAbs(target) {
		if d := path.Dir(name); d != "." {
			dir = strings.Split(d, "/")
		}
	}
	r := c.walk(dir, target, hops+1)
	c.memo[name] = r
	return r
}

// walk resolves rel from the directory dir.
func (c *linkChecker) walk(dir []string, rel string, hops int) result {
	dir = append([]string(nil), dir...)
	for _, comp := range strings.Split(rel, "/") {
		switch comp {
		case "", ".":
			continue
		case "..":
			if len(dir) == 0 {
				return result{escapes: true}
			}
			dir = dir[:len(dir)-1]
			continue
		}
		p := strings.Join(append(dir, comp), "/")
		if _, ok := c.links[p]; !ok {
			dir = append(dir, comp)
			continue
		}
		r := c.resolve(p, hops)
		if r.escapes || r.tooLong || r.dead {
			return r
		}
		dir = append(dir[:0:0], r.dir...)
	}
	return result{dir: dir}
}
