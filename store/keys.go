package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/spillway/spillway/exceptions"
)

// Key layout. Every kind has a short prefix ending in ':' so no prefix is a
// prefix of another; numbers are big-endian uint64; "\x00" separates the
// parts of composite keys (names and paths never contain NUL).
//
//	schema                                  schema version, decimal ASCII
//	m:KEY                                   meta value
//	c:NAME                                  counter (uint64)
//	i:NAME                                  image
//	s:NAME                                  sandbox
//	n:SANDBOX\0 N                           session
//	e:N                                     exception "exN"
//	E:SANDBOX\0 N                           exception by sandbox (index)
//	r:ID                                    record
//	rs:SANDBOX\0 ID                         record by sandbox (index)
//	rh:SANDBOX\0 PATH\0 ID                  record by path (history index)
//	rx:EXCEPTION\0 ID                       record by exception (index)
//	rn:SANDBOX\0 SESSION ID                 record by session (index)
//	rq:ID                                   pending record (index, all sandboxes)
//	rQ:SANDBOX\0 ID                         pending record (index, per sandbox)
//	a:SEQ                                   audit entry
//	ah                                      audit head of the fleet chain: CHAINSEQ ‖ sha256 (audit.go)
//	aH:SANDBOX                              audit head of a sandbox's chain: CHAINSEQ ‖ sha256
//	cs:SANDBOX\0 PATH\0 ^GEN                  current-state index (current.go)
//	cn:SANDBOX\0 ^GEN                        state counters: files, bytes (current_counts.go)
//	cq:SANDBOX                              records pending and not purged (current_counts.go)
//	cl:SANDBOX\0 GEN PATH\0                 change log of the index (changelog.go)
//	migrating                               next record id to convert while a schema migration runs
//	h:HOST                                  host of a fleet (lease.go)
//	l:SANDBOX                               lease of a sandbox (lease.go)
//	im:DIGEST\0 OLDID                        record id drawn by a fleet import (import.go)
const (
	keySchema = "schema"
	pMeta     = "m:"
	pCounter  = "c:"
	pImage    = "i:"
	pSandbox  = "s:"
	pSession  = "n:"
	pExc      = "e:"
	pExcSb    = "E:"
	pRec      = "r:"
	pRecSb    = "rs:"
	pRecPath  = "rh:"
	pRecExc   = "rx:"
	pRecSess  = "rn:"
	pPend     = "rq:"
	pPendSb   = "rQ:"
	pAudit    = "a:"
	keyHead   = "ah"
)

// key concatenates parts; strings are copied as bytes, uint64 big-endian.
func key(prefix string, parts ...any) []byte {
	b := []byte(prefix)
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b = append(b, v...)
			b = append(b, 0)
		case uint64:
			b = binary.BigEndian.AppendUint64(b, v)
		default:
			panic(fmt.Sprintf("store: bad key part %T", p))
		}
	}
	return b
}

// keyAfter returns where a scan of keys prefix ‖ big-endian number starts
// to read the numbers above after: nil (from the first) for 0, and
// ok=false when there is none (after is the largest number).
func keyAfter(prefix []byte, after uint64) (from []byte, ok bool) {
	switch after {
	case 0:
		return nil, true
	case math.MaxUint64:
		return nil, false
	}
	return binary.BigEndian.AppendUint64(bytes.Clone(prefix), after+1), true
}

// tailUint64 returns the big-endian number at the end of k.
func tailUint64(k []byte) (uint64, bool) {
	if len(k) < 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(k)-8:]), true
}

// checkName refuses names that cannot be a key component.
func checkName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("store: empty %s name", kind)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("store: %s name %q contains NUL", kind, name)
	}
	return nil
}

// exceptionNumber parses "exN" (N ≥ 1, no leading zeros).
func exceptionNumber(id string) (uint64, error) {
	n, err := exceptions.IDNumber(id)
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	return n, nil
}

var errShortKey = errors.New("store: malformed key")
