package persist

import (
	"errors"
	"io"
	"os"
	"time"

	"github.com/spillway/spillway/internal/change"
)

// RecoveryKept is what the recovery area keeps of a closed session: the
// content close refused and discarded, each until a time (zero: not kept).
type RecoveryKept struct {
	Session        uint64    `json:"session"`
	RefusedUntil   time.Time `json:"refused_until,omitzero"`
	DiscardedUntil time.Time `json:"discarded_until,omitzero"`
}

// Kept says whether anything of the session can be recovered.
func (k *RecoveryKept) Kept() bool {
	return k != nil && (!k.RefusedUntil.IsZero() || !k.DiscardedUntil.IsZero())
}

// PersistedFile is one change that crossed an exception.
type PersistedFile struct {
	Record    uint64          `json:"record,omitempty"`
	Path      string          `json:"path"`
	PathBytes []byte          `json:"path_bytes,omitempty"` // the exact bytes when path is not valid UTF-8
	Kind      change.Kind     `json:"kind"`
	Type      change.FileType `json:"type"`
	Size      int64           `json:"size"`
	Digest    string          `json:"digest,omitempty"`
	Exception string          `json:"exception"`
	Status    change.Status   `json:"status"`
	// The record's mode bits, owner and mtime, for the list a lost
	// commit is kept from (ledger_lost.go); not printed.
	mode     uint32
	uid, gid uint32
	mtime    time.Time
}

// Refusal is one change that an exception matched but a safety rule or a
// limit stopped.
type Refusal struct {
	Path      string          `json:"path"`
	PathBytes []byte          `json:"path_bytes,omitempty"` // the exact bytes when path is not valid UTF-8
	Kind      change.Kind     `json:"kind"`
	Type      change.FileType `json:"type"`
	Size      int64           `json:"size"`
	Exception string          `json:"exception"`
	Reason    string          `json:"reason"`
}

// RefusalGroup sums the refusals of one exception for one reason.
type RefusalGroup struct {
	Exception string    `json:"exception"`
	Reason    string    `json:"reason"`
	Count     int64     `json:"count"`
	Bytes     int64     `json:"bytes"`
	First     []Refusal `json:"first"` // the first RefusalSample refusals
}

// RefusalSample is how many refusals of each exception and reason a close
// summary names; the manifest names them all.
const RefusalSample = 20

// ExceptionTotal sums what one exception let through in a session.
type ExceptionTotal struct {
	Exception string `json:"exception"`
	Files     int64  `json:"files"`
	Bytes     int64  `json:"bytes"`
	Deletes   int64  `json:"deletes"` // deletions recorded (a deleted document is a record too)
}

// Discarded sums what a close threw away.
type Discarded struct {
	Count int64      `json:"count"`
	Bytes int64      `json:"bytes"`
	Top   []DirCount `json:"top"`
}

// CloseSummary is what close reports. Its memory is bounded whatever the
// number of refused or discarded changes: Refused holds only the first
// RefusalSample of each exception and reason, and EachRefused streams all
// of them from the session's manifest.
type CloseSummary struct {
	Sandbox       string `json:"sandbox"`
	Session       uint64 `json:"session"`
	Generation    uint64 `json:"generation"`
	DryRun        bool   `json:"dry_run"`
	AlreadyClosed bool   `json:"already_closed"`
	// NeverOpened says the sandbox, closed, has had no session yet.
	NeverOpened  bool             `json:"never_opened,omitempty"`
	Persisted    []PersistedFile  `json:"persisted"`
	Exceptions   []ExceptionTotal `json:"exceptions"`
	Refused      []Refusal        `json:"refused"` // a sample: see EachRefused
	RefusedCount int64            `json:"refused_count"`
	Refusals     []RefusalGroup   `json:"refusals"`
	Discarded    Discarded        `json:"discarded"`
	// Attention names the first discarded changes in security-relevant
	// places ("discarded, would have persisted malware-like changes");
	// AttentionCount counts them all.
	Attention      []Attention `json:"attention"`
	AttentionCount int64       `json:"attention_count"`
	// ExecDropped counts persisted files whose execute bits were dropped
	// because their exception lacks --allow-exec.
	ExecDropped int64 `json:"exec_dropped"`
	// Unchanged counts changes under an exception that equal the version
	// the session started with: no-ops, not recorded.
	Unchanged int64 `json:"unchanged"`
	// Manifest is the file listing every refused and discarded change
	// (empty in a dry run, whose manifest has no name).
	Manifest string `json:"manifest,omitempty"`
	// Partial lists the rules that persisted only part of what they
	// matched (an --atomic rule: none of it).
	Partial []Partial `json:"partial"`
	// Overridden lists the review decisions made while the sandbox was
	// open on paths this session changed again: each is persisted as a
	// new record (SPEC, "No-op changes").
	Overridden      []Overridden `json:"decided_while_open"`
	hadDecidedNotes bool         // the session has notes to drop at commit (close_decided.go)
	// Recovery says what the recovery area keeps of this session, and
	// until when (nil in a dry run).
	Recovery *RecoveryKept `json:"recovery,omitempty"`
	// ManifestIncomplete says the manifest could not be written in full
	// (a full disk); Refused is then all there is beyond the counts.
	ManifestIncomplete bool `json:"manifest_incomplete,omitempty"`

	tmp *os.File // a dry run's unnamed manifest
}

// fillEmpty makes every nil list of s an empty one: JSON has [] for an
// empty list, never null (docs/scripting.md), also for a summary read
// back from the store (gob leaves empty lists nil).
func (s *CloseSummary) fillEmpty() {
	if s.Persisted == nil {
		s.Persisted = []PersistedFile{}
	}
	if s.Exceptions == nil {
		s.Exceptions = []ExceptionTotal{}
	}
	if s.Refused == nil {
		s.Refused = []Refusal{}
	}
	if s.Refusals == nil {
		s.Refusals = []RefusalGroup{}
	}
	if s.Attention == nil {
		s.Attention = []Attention{}
	}
	if s.Partial == nil {
		s.Partial = []Partial{}
	}
	if s.Overridden == nil {
		s.Overridden = []Overridden{}
	}
	if s.Discarded.Top == nil {
		s.Discarded.Top = []DirCount{}
	}
}

// EachRefused calls fn for every refusal of the close, in walk order: from
// the manifest when there is one, else from the sample (a summary of an
// older store holds them all).
func (s *CloseSummary) EachRefused(fn func(Refusal) error) error {
	var r io.Reader
	switch {
	case s.tmp != nil:
		if _, err := s.tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		r = s.tmp
	case s.Manifest != "" && !s.ManifestIncomplete:
		f, err := os.Open(s.Manifest)
		if errors.Is(err, os.ErrNotExist) {
			return s.eachSample(fn)
		}
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	default:
		return s.eachSample(fn)
	}
	return eachManifestEntry(r, func(x ManifestEntry) error {
		if x.Verdict != change.VerdictRefuse {
			return nil
		}
		return fn(Refusal{Path: x.Path, PathBytes: x.PathBytes, Kind: x.Kind, Type: x.Type, Size: x.Size, Exception: x.Exception, Reason: x.Reason})
	})
}

func (s *CloseSummary) eachSample(fn func(Refusal) error) error {
	for _, r := range s.Refused {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// Release frees what a dry run's summary holds (its unnamed manifest).
func (s *CloseSummary) Release() {
	if s.tmp != nil {
		s.tmp.Close()
		s.tmp = nil
	}
}

// refusals tallies refusals per exception and reason, in first-seen order.
type refusals struct {
	groups []*RefusalGroup
	index  map[[2]string]*RefusalGroup
	count  int64
}

func (t *refusals) add(r Refusal) {
	if t.index == nil {
		t.index = map[[2]string]*RefusalGroup{}
	}
	k := [2]string{r.Exception, r.Reason}
	g := t.index[k]
	if g == nil {
		g = &RefusalGroup{Exception: r.Exception, Reason: r.Reason, First: []Refusal{}}
		t.index[k] = g
		t.groups = append(t.groups, g)
	}
	t.count++
	g.Count++
	g.Bytes += r.Size
	if len(g.First) < RefusalSample {
		g.First = append(g.First, r)
	}
}

// fill sets the summary's refusal fields.
func (t *refusals) fill(sum *CloseSummary) {
	sum.RefusedCount = t.count
	sum.Refusals = []RefusalGroup{}
	sum.Refused = []Refusal{}
	for _, g := range t.groups {
		sum.Refusals = append(sum.Refusals, *g)
		sum.Refused = append(sum.Refused, g.First...)
	}
}
