package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/failpoint"
)

// Import copies a single-host ledger (src) into a shared one (dst) in
// chunks, so that no transaction grows with the source (docs/fleet.md,
// "fleet import"). Record and exception ids are drawn anew in dst; the
// source's audit entries are appended again to dst's chains, each naming
// its original Seq and hash. The progress of an import is a meta value of
// dst and the record ids it drew are keys of their own:
//
//	m:import/ID           importProgress (JSON)
//	im:ID\0 OLDID          uvarint new record id
//
// ID identifies the source root (SourceID: its host and path), so a rerun
// finds the import even when the source changed since; imports written
// before it are keyed by DIGEST, the source's audit heads (SourceDigest),
// and still found by it. Every chunk moves the progress in the
// transaction that writes it, so a rerun after a crash goes on where the
// last commit stopped, and a rerun of a finished import of an unchanged
// source is a no-op (import_rerun.go: what a rerun does when the source
// changed). A sandbox's row is written last, by the transaction that
// finishes it: until then nothing lists it.
const (
	pImportMap       = "im:"
	metaImportPrefix = "import/"
	// ImportType is the type of the bridging entry in the fleet chain.
	ImportType = "fleet.import"
	// DefaultImportChunk is how many records, index entries or audit
	// entries one transaction of an import writes.
	DefaultImportChunk = 1000
)

// ImportOptions say where a source comes from and how to report.
type ImportOptions struct {
	Source     string // the source root, as the bridging entry names it
	SourceHost string // the host the source's sessions ran on (for sessions without one)
	Host       string // the host running the import
	Chunk      int    // writes per transaction (0: DefaultImportChunk)
	// CopyBlob is called for every digest the source's records name, with
	// the size the first record naming it says, all before the first write
	// to dst; Synced once after them.
	CopyBlob func(digest string, size int64) error
	Synced   func() error
	// Log, when set, is told how far the import has come.
	Log func(format string, args ...any)
	// failAfter, in tests, fails the import after that many chunks.
	failAfter int
}

// ImportResult says what an import did.
type ImportResult struct {
	Digest     string   `json:"digest"`     // the source's audit heads, hashed
	Already    bool     `json:"already"`    // imported before: nothing done
	Resumed    bool     `json:"resumed"`    // an interrupted import was finished
	Sandboxes  []string `json:"sandboxes"`  // the sandboxes imported
	Images     int      `json:"images"`     // image rows added
	Exceptions int      `json:"exceptions"` // exceptions copied
	Sessions   int      `json:"sessions"`
	Records    int      `json:"records"`
	Events     int      `json:"events"` // audit entries appended
	Blobs      int      `json:"blobs"`  // digests copied or found in place
	Bridge     uint64   `json:"bridge"` // Seq of the bridging entry
	// Earlier is the bridging entry of a finished import of the same
	// root that this run extended with what is new in the source.
	Earlier uint64 `json:"earlier,omitempty"`
	// Restarted are sandboxes an earlier run began (or finished, then
	// removed from the ledger) copied again because the source changed.
	Restarted []string `json:"restarted,omitempty"`
}

// importProgress is the state of an import kept in dst.
type importProgress struct {
	Source     string
	SourceHost string            // the host the source belongs to ("": older imports)
	Digest     string            // the source's digest when last written ("": older imports)
	Exceptions map[string]string // old id → new id
	Done       []string          // sandboxes finished
	// RecordsAfter is the last source record id copied, per sandbox
	// (records are copied by ascending id).
	RecordsAfter map[string]uint64
	// Heads is, per sandbox begun, its source chain head (CHAINSEQ:HASH)
	// when its copy began: what a rerun compares the source with.
	Heads map[string]string
	// Resync names sandboxes copied again over an earlier run's copy:
	// their records are looked up in the id map, not drawn anew.
	Resync map[string]bool
	// Renewed names sandboxes copied again after their ledger copy was
	// removed: their row gets a new Created, the incarnation host caches
	// are checked against, so no cache of the removed copy passes for it.
	Renewed map[string]bool
	// ChainAfter is, per source chain ("": the fleet chain), the last
	// ChainSeq appended; AuditAfter, of older imports, the last Seq.
	ChainAfter map[string]uint64
	AuditAfter uint64
	Bridge     uint64 // the last bridging entry's Seq
	Finished   bool
}

// ImportConflictError refuses an import that would overwrite the ledger.
type ImportConflictError struct{ Msg string }

func (e *ImportConflictError) Error() string { return e.Msg }

// Unwrap classes the refusal: the ledger or the source is not in a state
// the import can proceed from.
func (e *ImportConflictError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// ErrImportFailpoint is the error of the test failpoint.
var errImportFailpoint = errors.New("store: import failpoint")

// SourceDigest hashes every audit chain head of s, the identity of a
// source at the time of its import.
func (s *Store) SourceDigest() (string, map[string]string, error) {
	var heads map[string]chainHeadValue
	if err := s.View(func(tx *Tx) error {
		var err error
		heads, err = readHeads(tx)
		return err
	}); err != nil {
		return "", nil, err
	}
	chains := make([]string, 0, len(heads))
	for c := range heads {
		chains = append(chains, c)
	}
	sort.Strings(chains)
	h := sha256.New()
	named := map[string]string{}
	for _, c := range chains {
		v := fmt.Sprintf("%d:%x", heads[c].seq, heads[c].hash)
		fmt.Fprintf(h, "%s\x00%s\x00", c, v)
		named["head:"+c] = v
	}
	return hex.EncodeToString(h.Sum(nil)), named, nil
}

func (p *importProgress) done(sb string) bool {
	for _, d := range p.Done {
		if d == sb {
			return true
		}
	}
	return false
}

// progress returns this import's progress, which every chunk after the
// first finds (an error says it is gone).
func (im *importer) progress(tx *Tx) (*importProgress, error) {
	p, err := getProgress(tx, im.key)
	if err != nil || p == nil {
		return nil, fmt.Errorf("import progress lost: %v", err)
	}
	return p, nil
}

// orEmpty makes *m an empty map when it is nil (a field an older record
// of the progress lacks).
func orEmpty[K comparable, V any](m *map[K]V) {
	if *m == nil {
		*m = map[K]V{}
	}
}

// getProgress reads the progress recorded under digest (nil: none).
func getProgress(tx *Tx, digest string) (*importProgress, error) {
	v, ok, err := tx.GetMeta(metaImportPrefix + digest)
	if err != nil || !ok {
		return nil, err
	}
	var p importProgress
	if err := json.Unmarshal([]byte(v), &p); err != nil {
		return nil, fmt.Errorf("store: import progress %s: %w", digest, err)
	}
	orEmpty(&p.Exceptions)
	orEmpty(&p.RecordsAfter)
	orEmpty(&p.Heads)
	orEmpty(&p.Resync)
	orEmpty(&p.Renewed)
	orEmpty(&p.ChainAfter)
	return &p, nil
}

func putProgress(tx *Tx, digest string, p *importProgress) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return tx.PutMeta(metaImportPrefix+digest, string(b))
}

// Import copies src into dst (see the comment at the top of this file).
// It refuses, writing nothing, a source whose audit chains do not verify,
// with an open sandbox, or with a sandbox or image dst already has with
// other content.
func Import(ctx context.Context, src, dst *Store, o ImportOptions) (*ImportResult, error) {
	if o.Chunk <= 0 {
		o.Chunk = DefaultImportChunk
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	im := &importer{ctx: ctx, src: src, dst: dst, o: o}
	return im.run()
}

type importer struct {
	ctx      context.Context
	src, dst *Store
	o        ImportOptions
	digest   string            // the source's audit heads, hashed
	key      string            // the progress's key: SourceID, or the digest for older imports
	heads    map[string]string // "head:CHAIN" → CHAINSEQ:HASH, of the source now
	prog     *importProgress
	plan     *rerunPlan
	claims   map[string]string // sandbox → the source of another unfinished import copying it
	res      ImportResult
	chunks   int
}

// chunk counts a transaction of the import and fails in tests.
func (im *importer) chunk() error {
	failpoint.Hit("fleet-import.chunk")
	im.chunks++
	if im.o.failAfter > 0 && im.chunks > im.o.failAfter {
		return errImportFailpoint
	}
	return im.ctx.Err()
}

func (im *importer) run() (*ImportResult, error) {
	prob, err := im.src.VerifyAudit(im.ctx)
	if err != nil {
		return nil, fmt.Errorf("verify the source's audit log: %w", err)
	}
	if prob != nil {
		return nil, fmt.Errorf("the source's audit log is broken (%s): nothing imported", prob.Message)
	}
	digest, heads, err := im.src.SourceDigest()
	if err != nil {
		return nil, err
	}
	im.digest, im.res.Digest, im.heads = digest, digest, heads
	if err := im.findProgress(); err != nil {
		return nil, err
	}
	if p := im.prog; p != nil && p.Finished && (p.Digest == digest || p.Digest == "") {
		im.res.Already = true
		im.res.Sandboxes = append([]string{}, p.Done...)
		im.res.Bridge = p.Bridge // the finished import's bridging entry
		return &im.res, nil
	}
	if im.prog != nil {
		im.res.Resumed = !im.prog.Finished
		if im.prog.Finished {
			im.res.Earlier = im.prog.Bridge
		}
	}
	var images []*Image
	var sbs []*Sandbox
	if err := im.src.View(func(tx *Tx) error {
		if images, err = tx.ListImages(); err != nil {
			return err
		}
		sbs, err = tx.ListSandboxes()
		return err
	}); err != nil {
		return nil, err
	}
	if err := im.reconcile(sbs); err != nil {
		return nil, err
	}
	if err := im.precheck(images, sbs); err != nil {
		return nil, err
	}
	if err := im.copyBlobs(sbs); err != nil {
		return nil, err
	}
	for _, name := range im.plan.abandon {
		if err := im.abandon(name); err != nil {
			return nil, fmt.Errorf("take back the unfinished copy of %s: %w", name, err)
		}
	}
	if err := im.start(images); err != nil {
		return nil, err
	}
	for _, name := range im.res.Restarted {
		im.o.Log("sandbox %s changed in the source since an earlier run copied it: copying it again", name)
	}
	for _, sb := range sbs {
		im.res.Sandboxes = append(im.res.Sandboxes, sb.Name)
		if im.prog.done(sb.Name) {
			continue
		}
		if err := im.sandbox(sb); err != nil {
			return nil, fmt.Errorf("import sandbox %s: %w", sb.Name, err)
		}
	}
	if err := im.audit(); err != nil {
		return nil, fmt.Errorf("import the audit log: %w", err)
	}
	return &im.res, im.bridge(heads)
}

// precheck refuses open sandboxes and conflicts before anything is written.
func (im *importer) precheck(images []*Image, sbs []*Sandbox) error {
	for _, sb := range sbs {
		if sb.State != StateClosed {
			return &ImportConflictError{fmt.Sprintf("sandbox %s is %s in the source (session %d): close it there first (or recover it), then import again; nothing imported", sb.Name, sb.State, sb.Session)}
		}
	}
	return im.dst.View(func(tx *Tx) error {
		for _, img := range images {
			have, err := tx.GetImage(img.Name)
			switch {
			case isNotFound(err):
			case err != nil:
				return err
			case have.Files != img.Files || have.Bytes != img.Bytes:
				return &ImportConflictError{fmt.Sprintf("image %s is already in the ledger with other content (%d files, %d bytes; the source's has %d files, %d bytes): nothing imported", img.Name, have.Files, have.Bytes, img.Files, img.Bytes)}
			case have.Digest != "" && img.Digest != "" && have.Digest != img.Digest:
				// Both imported since digests are kept: the trees differ
				// in content, not only in size.
				return &ImportConflictError{fmt.Sprintf("image %s is already in the ledger with other content (its tree digests to %s; the source's to %s): nothing imported", img.Name, have.Digest, img.Digest)}
			}
		}
		for _, sb := range sbs {
			if im.prog != nil && im.prog.done(sb.Name) {
				continue
			}
			if other := im.claims[sb.Name]; other != "" {
				return &ImportConflictError{fmt.Sprintf("sandbox %s is being imported from %s by an unfinished import: rerun that import first (or remove %s from one of the roots); nothing imported", sb.Name, other, sb.Name)}
			}
			if _, err := tx.GetSandbox(sb.Name); err == nil {
				return &ImportConflictError{fmt.Sprintf("sandbox %s is already in the ledger (not from this source): remove the ledger's (spillway rm %s, on the fleet) or the source's (spillway --root SOURCE rm %s) and import again; nothing imported", sb.Name, sb.Name, sb.Name)}
			} else if !isNotFound(err) {
				return err
			}
		}
		return nil
	})
}

// copyBlobs hands every digest the source's records name to CopyBlob.
func (im *importer) copyBlobs(sbs []*Sandbox) error {
	if im.o.CopyBlob == nil {
		return nil
	}
	seen := map[string]bool{}
	err := im.src.View(func(tx *Tx) error {
		for _, sb := range sbs {
			err := tx.ForEachRecord(im.ctx, sb.Name, func(r *Record) error {
				if r.Digest == "" || seen[r.Digest] {
					return nil
				}
				seen[r.Digest] = true
				if len(seen)%1000 == 0 {
					im.o.Log("copied %d blobs", len(seen))
				}
				return im.o.CopyBlob(r.Digest, r.Size)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copy blobs: %w", err)
	}
	im.res.Blobs = len(seen)
	im.o.Log("copied %d blobs", len(seen))
	if im.o.Synced != nil {
		return im.o.Synced()
	}
	return nil
}

// start writes the progress, the images and the exceptions: one
// transaction (exceptions are few).
func (im *importer) start(images []*Image) error {
	var excs []*exceptions.Exception
	if err := im.src.View(func(tx *Tx) error {
		var err error
		excs, err = tx.ListExceptions("")
		return err
	}); err != nil {
		return err
	}
	if err := im.chunk(); err != nil {
		return err
	}
	var p *importProgress
	err := im.dst.Update(func(tx *Tx) error {
		var err error
		if p, err = getProgress(tx, im.key); err != nil {
			return err
		}
		if p == nil {
			p = &importProgress{Source: im.o.Source, SourceHost: im.o.SourceHost, Exceptions: map[string]string{}, RecordsAfter: map[string]uint64{},
				Heads: map[string]string{}, Resync: map[string]bool{}, Renewed: map[string]bool{}, ChainAfter: map[string]uint64{}}
		}
		p.Digest, p.Finished = im.digest, false
		if err := im.restart(tx, p); err != nil {
			return err
		}
		im.res.Images, im.res.Exceptions = 0, 0
		for _, img := range images {
			if _, err := tx.GetImage(img.Name); isNotFound(err) {
				if err := tx.PutImage(img); err != nil {
					return err
				}
				im.res.Images++
			} else if err != nil {
				return err
			}
		}
		for _, x := range excs {
			id, ok := p.Exceptions[x.ID]
			if ok && p.done(x.Sandbox) {
				continue
			}
			if ok {
				// A sandbox not finished yet: its exceptions as the
				// source has them now, under the ids drawn before.
				c := *x
				c.ID = id
				if err := tx.PutException(&c); err != nil {
					return err
				}
				continue
			}
			id, err := tx.NextExceptionID()
			if err != nil {
				return err
			}
			p.Exceptions[x.ID] = id
			c := *x
			c.ID = id
			if err := tx.PutException(&c); err != nil {
				return err
			}
			im.res.Exceptions++
		}
		return putProgress(tx, im.key, p)
	})
	im.prog = p
	return err
}

// sandbox copies one sandbox: its sessions, records and current state in
// chunks, then its row.
func (im *importer) sandbox(sb *Sandbox) error {
	im.o.Log("importing sandbox %s", sb.Name)
	if err := im.begin(sb.Name); err != nil {
		return err
	}
	var sessions []*Session
	if err := im.src.View(func(tx *Tx) error {
		var err error
		sessions, err = tx.ListSessions(sb.Name)
		return err
	}); err != nil {
		return err
	}
	for i := 0; i < len(sessions); i += im.o.Chunk {
		part := sessions[i:min(i+im.o.Chunk, len(sessions))]
		if err := im.write(func(tx *Tx) error {
			for _, se := range part {
				c := *se
				if c.Host == "" {
					c.Host = im.o.SourceHost
				}
				if err := tx.PutSession(&c); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	im.res.Sessions += len(sessions)
	if err := im.records(sb); err != nil {
		return err
	}
	if err := im.current(sb); err != nil {
		return err
	}
	var counts Counts
	if err := im.src.View(func(tx *Tx) error {
		var err error
		counts, err = tx.CountsAt(sb.Name, sb.Generation)
		return err
	}); err != nil {
		return err
	}
	if err := im.chunk(); err != nil {
		return err
	}
	return im.dst.Update(func(tx *Tx) error {
		if sb.Generation > 0 {
			if err := tx.SetCounts(sb.Name, sb.Generation, counts); err != nil {
				return err
			}
		}
		if _, err := tx.GetSandbox(sb.Name); err == nil {
			return &ImportConflictError{fmt.Sprintf("sandbox %s appeared in the ledger during the import", sb.Name)}
		} else if !isNotFound(err) {
			return err
		}
		p, err := im.progress(tx)
		if err != nil {
			return err
		}
		c := *sb
		c.Path, c.Snapshot, c.Layer, c.BaseDir = "", "", "", ""
		if p.Renewed[sb.Name] {
			c.Created = tx.Now()
		}
		if err := tx.PutSandbox(&c); err != nil {
			return err
		}
		p.Done = append(p.Done, sb.Name)
		delete(p.Resync, sb.Name)
		delete(p.Renewed, sb.Name)
		im.prog = p
		return putProgress(tx, im.key, p)
	})
}

// putNewRecord is PutRecord for an id this transaction drew: no old
// record to read (a round trip per record on PostgreSQL), and its keys
// are created (kvTx.create), since none can exist.
func (tx *Tx) putNewRecord(r *Record) error {
	tx.movePending(nil, r)
	v, err := encode(r)
	if err != nil {
		return err
	}
	if err := tx.create(key(pRec, r.ID), v); err != nil {
		return err
	}
	for _, k := range recordIndexKeys(r) {
		if err := tx.create(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// idMap reads the record ids this import drew (old → new), one scan.
func (im *importer) idMap() (map[uint64]uint64, error) {
	ids := map[uint64]uint64{}
	prefix := key(pImportMap, im.key)
	err := im.dst.View(func(tx *Tx) error {
		return tx.scanCtx(im.ctx, prefix, true, func(k, v []byte) error {
			old, ok := tailUint64(k)
			id, n := binary.Uvarint(v)
			if !ok || len(k) != len(prefix)+8 || n != len(v) {
				return fmt.Errorf("store: malformed import map entry %x", k)
			}
			ids[old] = id
			return nil
		})
	})
	return ids, err
}

// write runs fn as one chunk of the import.
func (im *importer) write(fn func(tx *Tx) error) error {
	if err := im.chunk(); err != nil {
		return err
	}
	return im.dst.Update(fn)
}

func mapKey(k string, old uint64) []byte { return key(pImportMap, k, old) }

// records copies a sandbox's records with new ids, chunk by chunk, each
// chunk with its part of the id map. A sandbox copied again (Resync)
// keeps the ids drawn before: a record the map has is written over at its
// id, and the earlier copies of records the source no longer has are
// deleted (sweep).
func (im *importer) records(sb *Sandbox) error {
	resync := im.prog.Resync[sb.Name]
	ids := map[uint64]uint64{}
	if resync {
		var err error
		if ids, err = im.idMap(); err != nil {
			return err
		}
	}
	var batch []*Record
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n := 0
		var drawn map[uint64]uint64
		err := im.write(func(tx *Tx) error {
			n, drawn = 0, map[uint64]uint64{}
			p, err := im.progress(tx)
			if err != nil {
				return err
			}
			for _, r := range batch {
				if r.ID <= p.RecordsAfter[sb.Name] {
					continue // imported by an earlier run
				}
				c := *r
				if x, ok := im.prog.Exceptions[c.Exception]; ok && c.Exception != "" {
					c.Exception = x
				}
				if id, ok := ids[r.ID]; ok {
					c.ID = id
					if err := tx.PutRecord(&c); err != nil {
						return err
					}
				} else {
					if c.ID, err = tx.NextRecordID(); err != nil {
						return err
					}
					if err := tx.putNewRecord(&c); err != nil {
						return err
					}
					if err := tx.set(mapKey(im.key, r.ID), binary.AppendUvarint(nil, c.ID)); err != nil {
						return err
					}
					drawn[r.ID] = c.ID
				}
				p.RecordsAfter[sb.Name] = r.ID
				n++
			}
			return putProgress(tx, im.key, p)
		})
		if err == nil && resync {
			for o, id := range drawn {
				ids[o] = id
			}
		}
		im.res.Records += n
		batch = batch[:0]
		if err == nil {
			im.o.Log("sandbox %s: %d records", sb.Name, im.res.Records)
		}
		return err
	}
	err := im.src.View(func(tx *Tx) error {
		return tx.ForEachRecord(im.ctx, sb.Name, func(r *Record) error {
			batch = append(batch, r)
			if len(batch) < im.o.Chunk {
				return nil
			}
			return flush()
		})
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if resync {
		return im.sweep(sb.Name)
	}
	return nil
}

// current copies the sandbox's current state at its generation, naming
// the new record ids. Writing a version again writes the same value, so a
// rerun of a chunk changes nothing.
func (im *importer) current(sb *Sandbox) error {
	if sb.Generation == 0 {
		return nil
	}
	type entry struct {
		path string
		id   uint64
	}
	if im.prog.Resync[sb.Name] {
		// The earlier copy's index, perhaps at another generation.
		if _, err := im.dst.DropCurrent(im.ctx, sb.Name); err != nil {
			return err
		}
	}
	ids, err := im.idMap()
	if err != nil {
		return err
	}
	var batch []entry
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := im.write(func(tx *Tx) error {
			for _, en := range batch {
				id := ids[en.id]
				if id == 0 {
					return fmt.Errorf("record %d of %s (in its state at %s) was not imported", en.id, sb.Name, en.path)
				}
				r, err := tx.GetRecord(id)
				if err != nil {
					return fmt.Errorf("record %d of %s (imported as %d): %w", en.id, sb.Name, id, err)
				}
				if err := tx.PutCurrentNew(sb.Name, sb.Generation, r); err != nil {
					return err
				}
			}
			// The counters are copied from the source when the sandbox
			// is finished (countsOf), not summed chunk by chunk: that
			// reads each path's subtree again.
			tx.changed = nil
			return nil
		})
		batch = batch[:0]
		return err
	}
	err = im.src.View(func(tx *Tx) error {
		return tx.ForEachCurrentAt(im.ctx, sb.Name, sb.Generation, func(path string, id uint64) error {
			batch = append(batch, entry{path, id})
			if len(batch) < im.o.Chunk {
				return nil
			}
			return flush()
		})
	})
	if err != nil {
		return err
	}
	return flush()
}

// audit appends the source's entries, oldest first, to dst's chains:
// per chain those after the last one appended (ChainAfter), and of a
// sandbox chain none past the head its copy was made at (Heads): a
// sandbox the source removed or changed after it was imported keeps the
// history of the state the ledger has.
func (im *importer) audit() error {
	var batch []*Event
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n := 0
		err := im.write(func(tx *Tx) error {
			n = 0
			p, err := im.progress(tx)
			if err != nil {
				return err
			}
			for _, e := range batch {
				if p.skips(e) {
					continue
				}
				if err := im.appendImported(tx, e); err != nil {
					return err
				}
				p.appended(e)
				n++
			}
			im.prog = p
			return putProgress(tx, im.key, p)
		})
		im.res.Events += n
		batch = batch[:0]
		return err
	}
	p := im.prog
	err := im.src.ForEachEvent(im.ctx, "", func(e *Event) error {
		if p.skips(e) {
			return nil
		}
		batch = append(batch, e)
		if len(batch) < im.o.Chunk {
			return nil
		}
		return flush()
	})
	if err != nil {
		return err
	}
	return flush()
}

// appendImported appends a copy of a source entry: its time, user, type,
// sandbox and data, plus the original's Seq and hash and the digest of the
// import ("import.*"; its own hash then covers them).
func (im *importer) appendImported(tx *Tx, e *Event) error {
	data := maps(e.Data)
	data["import.seq"] = fmt.Sprint(e.Seq)
	data["import.hash"] = fmt.Sprintf("%x", e.Hash)
	data["import.source"] = im.digest
	cseq, prev, _, err := tx.chainHead(e.Sandbox)
	if err != nil {
		return err
	}
	seq, err := tx.nextAuditSeq()
	if err != nil {
		return err
	}
	n := &Event{V: eventChained, ChainSeq: cseq + 1, Seq: seq, Time: e.Time, Type: e.Type, Sandbox: e.Sandbox, User: e.User, Data: data, Prev: prev}
	n.Hash = n.ComputeHash()
	if err := tx.put(AuditKey(n.Seq), n); err != nil {
		return err
	}
	hv := binary.BigEndian.AppendUint64(nil, n.ChainSeq)
	return tx.set(headKey(e.Sandbox), append(hv, n.Hash[:]...))
}

// bridge appends the bridging entry to the fleet chain and marks the
// import finished, in one transaction.
func (im *importer) bridge(heads map[string]string) error {
	if err := im.chunk(); err != nil {
		return err
	}
	return im.dst.Update(func(tx *Tx) error {
		p, err := im.progress(tx)
		if err != nil {
			return err
		}
		if p.Finished {
			return nil
		}
		data := map[string]string{
			"source":      im.o.Source,
			"source_host": im.o.SourceHost,
			"host":        im.o.Host,
			"digest":      im.digest,
			"sandboxes":   strings.Join(p.Done, " "),
		}
		if p.Bridge != 0 {
			data["earlier"] = fmt.Sprint(p.Bridge)
		}
		for k, v := range heads {
			data[k] = v
		}
		var ex []string
		for o, n := range p.Exceptions {
			ex = append(ex, o+"="+n)
		}
		sort.Strings(ex)
		data["exceptions"] = strings.Join(ex, " ")
		e, err := tx.Append(tx.Now(), ImportType, "", data)
		if err != nil {
			return err
		}
		im.res.Bridge = e.Seq
		p.Bridge, p.Finished = e.Seq, true
		return putProgress(tx, im.key, p)
	})
}
