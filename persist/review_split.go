package persist

import (
	"context"
	"path"
	"slices"
	"strings"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// A decision on part of a sqlite database (the file without its -wal
// journal) or of a git repository (one object of its .git directory) can
// leave what persists inconsistent: SPEC's rejection brings the older
// version of one file back beside the newer version of the others. A
// rejected directory stays while records beneath it stand. The decision
// is made as asked; SplitDecisions names what it split so the reviewer
// can decide the rest the same way.

// SplitDecision is one decided record whose companions from the same session
// stand otherwise after a decision.
type SplitDecision struct {
	Record     *store.Record
	What       string   // "sqlite database", "git repository" or "directory"
	Whole      string   // the database's file, the repository's .git directory, or the directory
	Companions []uint64 // the companions' record ids, ascending
}

// sqliteSuffixes name a sqlite database's companion files.
var sqliteSuffixes = []string{"-wal", "-shm", "-journal"}

// sqliteBase returns the database file p belongs to (p itself, or p less
// a companion suffix).
func sqliteBase(p string) string {
	for _, s := range sqliteSuffixes {
		if b, ok := strings.CutSuffix(p, s); ok && !strings.HasSuffix(b, "/") {
			return b
		}
	}
	return p
}

// gitDir returns the .git directory p lies in or is ("" if none).
func gitDir(p string) string {
	for a := p; a != "/" && a != "."; a = path.Dir(a) {
		if path.Base(a) == ".git" {
			return a
		}
	}
	return ""
}

// SplitDecisions returns, for the records of d decided to status, those
// whose companions of the same session (a sqlite database's file and its
// -wal, -shm or -journal; the records under the same .git directory) stand
// otherwise in the persisted state now: a rejected record's companions
// still in effect (approved, or pending under review after), a held-back
// record's (review before) that was approved, its companions still held
// back. Approving a review-after record changes no state and splits
// nothing. At most one entry per database or repository. It reads each
// session the decision touched once (its record index).
func (e *Env) SplitDecisions(ctx context.Context, d *Decided, status change.Status) ([]SplitDecision, error) {
	if d == nil || len(d.Records) == 0 {
		return nil, nil
	}
	decided := map[uint64]bool{}
	var recs []*store.Record // the decided records whose decision changed the state
	for _, r := range d.Records {
		decided[r.ID] = true
		if status == change.StatusRejected || r.Review == change.ReviewBefore {
			recs = append(recs, r)
		}
	}
	d = &Decided{Records: recs}
	split := func(c *store.Record) bool {
		if decided[c.ID] {
			return false
		}
		if status == change.StatusRejected {
			return store.InEffectByStatus(c)
		}
		return c.Status == change.StatusPending && c.Review == change.ReviewBefore && !c.Purged
	}
	type sessionKey struct {
		sandbox string
		n       uint64
	}
	type companions struct {
		byPath map[string][]uint64 // the session's records at sqlite names that split
		named  map[string]bool     // every sqlite companion name of the session (-wal, -shm, -journal)
		byGit  map[string][]uint64 // per .git directory, its records that split
		byDir  map[string][]uint64 // per decided directory, the records beneath it that split
	}
	sessions := map[sessionKey]*companions{}
	// The directories decided, per session: a rejected directory stays
	// while the records beneath it stand.
	dirs := map[sessionKey]map[string]bool{}
	for _, r := range d.Records {
		if decidedDir(r) {
			k := sessionKey{r.Sandbox, r.Session}
			if dirs[k] == nil {
				dirs[k] = map[string]bool{}
			}
			dirs[k][r.Path] = true
		}
	}
	err := e.store.View(func(tx *store.Tx) error {
		for _, r := range d.Records {
			k := sessionKey{r.Sandbox, r.Session}
			if sessions[k] != nil {
				continue
			}
			if len(d.Records) <= fewDecided && !mayHaveCompanions(tx, r) {
				continue // a plain document: its session need not be read
			}
			c := &companions{byPath: map[string][]uint64{}, named: map[string]bool{}, byGit: map[string][]uint64{}, byDir: map[string][]uint64{}}
			ds := dirs[k]
			if err := tx.ForEachSessionRecord(ctx, r.Sandbox, r.Session, func(x *store.Record) error {
				if len(ds) > 0 && split(x) {
					for a := path.Dir(x.Path); a != x.Path; a = path.Dir(a) {
						if ds[a] {
							c.byDir[a] = append(c.byDir[a], x.ID)
						}
						if a == "/" || a == "." {
							break
						}
					}
				}
				if g := gitDir(x.Path); g != "" {
					if split(x) {
						c.byGit[g] = append(c.byGit[g], x.ID)
					}
					return nil
				}
				if sqliteBase(x.Path) != x.Path {
					c.named[x.Path] = true
				}
				if split(x) {
					c.byPath[x.Path] = append(c.byPath[x.Path], x.ID)
				}
				return nil
			}); err != nil {
				return err
			}
			sessions[k] = c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []SplitDecision
	for _, r := range d.Records {
		c := sessions[sessionKey{r.Sandbox, r.Session}]
		if c == nil {
			continue
		}
		p := SplitDecision{Record: r}
		if decidedDir(r) && len(c.byDir[r.Path]) > 0 {
			p.What, p.Whole, p.Companions = "directory", r.Path, c.byDir[r.Path]
		} else if g := gitDir(r.Path); g != "" {
			p.What, p.Whole, p.Companions = "git repository", g, c.byGit[g]
		} else {
			base := sqliteBase(r.Path)
			journal := false
			for _, s := range sqliteSuffixes {
				journal = journal || c.named[base+s]
			}
			if !journal {
				continue // a file with no -wal, -shm or -journal in its session
			}
			p.What, p.Whole = "sqlite database", base
			for _, n := range append([]string{base}, suffixed(base)...) {
				p.Companions = append(p.Companions, c.byPath[n]...)
			}
		}
		key := r.Sandbox + "\x00" + p.Whole
		if len(p.Companions) == 0 || seen[key] {
			continue
		}
		seen[key] = true
		p.Companions = slices.Clone(p.Companions)
		slices.Sort(p.Companions)
		out = append(out, p)
	}
	return out, nil
}

// fewDecided is up to how many decided records SplitDecisions looks at
// each one's names first (mayHaveCompanions) before it reads a session:
// a page of the browser review, a reject of a few documents. Past it, one
// read of each session costs less than looking name by name.
const fewDecided = 64

// mayHaveCompanions says whether r can have companions in its session: it
// lies in a .git directory, has a sqlite companion's name, or its session
// has a record at one of its companion names.
func mayHaveCompanions(tx *store.Tx, r *store.Record) bool {
	if gitDir(r.Path) != "" || sqliteBase(r.Path) != r.Path || decidedDir(r) {
		return true
	}
	if r.Type != change.TypeFile && r.Kind != change.KindDelete {
		return false
	}
	for _, n := range suffixed(r.Path) {
		hist, err := tx.PathHistory(r.Sandbox, n)
		if err != nil {
			return true // read the session: it tells
		}
		for _, h := range hist {
			if h.Session == r.Session {
				return true
			}
		}
	}
	return false
}

// suffixed returns base with each sqlite companion suffix.
func suffixed(base string) []string {
	out := make([]string, len(sqliteSuffixes))
	for i, s := range sqliteSuffixes {
		out[i] = base + s
	}
	return out
}

// decidedDir says whether r is a directory the decision can take away or
// bring: its records beneath it of the same session decide whether it
// stays (a directory holding a record in effect does).
func decidedDir(r *store.Record) bool {
	return r.Type == change.TypeDir && r.Kind != change.KindDelete && !r.MetaOnly
}
