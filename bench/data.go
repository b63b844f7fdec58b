package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"

	"github.com/spillway/spillway/internal/testrootfs"
)

// imageSpec is a synthetic image: the busybox rootfs plus Files generated
// files, the same tree for the same seed and size.
type imageSpec struct {
	Files int
	Docs  int // documents under /home/user/Documents (part of Files)
	Seed  uint64
}

// genImage is a generated image on disk, with the lists a session needs.
type genImage struct {
	Dir   string
	Docs  []string // documents, sandbox paths
	Other []string // every other generated file, sandbox paths
	Bytes int64
}

// noise is a buffer of random bytes that file contents are cut from.
var noise = func() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 1<<20+4096)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

// content returns n bytes of deterministic filler chosen by r.
func content(r *rand.Rand, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		off := r.IntN(len(noise) - 4096)
		k := min(n-len(out), len(noise)-off)
		out = append(out, noise[off:off+k]...)
	}
	return out
}

// areas are the top-level places generated files go, with their weights:
// most files of a real image are libraries, data and documentation.
var areas = []struct {
	dir    string
	weight int
}{
	{"usr/lib", 40}, {"usr/share", 30}, {"opt/app", 14}, {"var/lib", 8}, {"etc/conf", 3}, {"home/user/.local", 5},
}

// fileSize draws a size from a log-normal distribution (median about
// 1.1 KiB, mean about 4 KiB, capped at 1 MiB), as measured on distribution
// images.
func fileSize(r *rand.Rand) int {
	s := math.Exp(7.0 + 1.6*r.NormFloat64())
	return int(min(s, 1<<20))
}

// buildImage writes the image of spec into dir.
func buildImage(dir string, spec imageSpec) (*genImage, error) {
	if err := testrootfs.Build(dir); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(spec.Seed, uint64(spec.Files)))
	g := &genImage{Dir: dir}
	// A random recursive tree: each new directory hangs under a random
	// existing one of the same area, no deeper than 12 levels; about 15
	// files a directory.
	type dirEnt struct {
		path  string
		depth int
	}
	others := spec.Files - spec.Docs
	var dirs [][]dirEnt
	total := 0
	for _, a := range areas {
		total += a.weight
	}
	for _, a := range areas {
		n := max(1, others*a.weight/total/15)
		ds := []dirEnt{{a.dir, 0}}
		for i := 1; i < n; i++ {
			p := ds[r.IntN(len(ds))]
			if p.depth >= 10 {
				p = ds[0]
			}
			ds = append(ds, dirEnt{fmt.Sprintf("%s/d%d", p.path, i), p.depth + 1})
		}
		dirs = append(dirs, ds)
	}
	for i := range others {
		w := r.IntN(total)
		ai := 0
		for w >= areas[ai].weight {
			w -= areas[ai].weight
			ai++
		}
		d := dirs[ai][r.IntN(len(dirs[ai]))]
		p := fmt.Sprintf("/%s/f%07d.dat", d.path, i)
		if err := writeGen(dir, p, content(r, fileSize(r))); err != nil {
			return nil, err
		}
		g.Other = append(g.Other, p)
	}
	// Documents: a few project folders, 20-300 KiB each.
	for i := range spec.Docs {
		p := fmt.Sprintf("/home/user/Documents/project%d/doc%04d.odt", i%8, i)
		if err := writeGen(dir, p, content(r, 20<<10+r.IntN(280<<10))); err != nil {
			return nil, err
		}
		g.Docs = append(g.Docs, p)
	}
	for _, p := range append(g.Other, g.Docs...) {
		fi, err := os.Lstat(filepath.Join(dir, p))
		if err != nil {
			return nil, err
		}
		g.Bytes += fi.Size()
	}
	sort.Strings(g.Other)
	return g, nil
}

// writeGen writes a file at sandbox path p under root, creating parents.
func writeGen(root, p string, b []byte) error {
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return os.WriteFile(full, b, 0o644)
}

// pick returns n distinct elements of from, chosen by r, sorted.
func pick(r *rand.Rand, from []string, n int) []string {
	n = min(n, len(from))
	idx := r.Perm(len(from))[:n]
	out := make([]string, n)
	for i, j := range idx {
		out[i] = from[j]
	}
	sort.Strings(out)
	return out
}
