package store

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/change"
)

// recordV2 is the encoding version of records written since schema 2: a
// fixed sequence of fields, each a uvarint, a zigzag varint, or a
// uvarint-length-prefixed byte string, with no type description. A
// record's value is about its path plus 80 bytes (gob spent about 300
// bytes of every record on its type description).
//
//	ID Session Size Mode UID GID (uvarints; Size a varint)
//	Sandbox Path Kind Type Link Exception Review Status Reason DecidedBy Note (strings)
//	Digest (0: none, 1: sha256 as 32 bytes, 2: a string, 3: none because
//	the record was pruned; a decoder older than tag 3 refuses such a
//	record, and records without it decode as before)
//	Flags (one byte: 1 Purged, 2 MetaOnly; a decoder older than flag 2
//	refuses such a record)
//	Mtime Created DecidedAt (time.MarshalBinary, length-prefixed; empty: zero)
const recordV2 = 2

// The bits of a v2 record's flags byte.
const (
	flagPurged   = 1
	flagMetaOnly = 2
)

// encodeRecord writes r in the v2 encoding.
func encodeRecord(r *Record) ([]byte, error) {
	b := make([]byte, 0, 96+len(r.Path)+len(r.Sandbox)+len(r.Link)+len(r.Note)+len(r.Reason))
	b = append(b, recordV2)
	b = binary.AppendUvarint(b, r.ID)
	b = binary.AppendUvarint(b, r.Session)
	b = binary.AppendVarint(b, r.Size)
	b = binary.AppendUvarint(b, uint64(r.Mode))
	b = binary.AppendUvarint(b, uint64(r.UID))
	b = binary.AppendUvarint(b, uint64(r.GID))
	for _, s := range []string{r.Sandbox, r.Path, string(r.Kind), string(r.Type), r.Link, r.Exception,
		string(r.Review), string(r.Status), r.Reason, r.DecidedBy, r.Note} {
		b = appendString(b, s)
	}
	if r.Pruned {
		if r.Digest != "" {
			return nil, fmt.Errorf("store: encode record %d: a pruned record keeps no digest", r.ID)
		}
		b = append(b, 3)
	} else if raw, ok := sha256Bytes(r.Digest); ok {
		b = append(b, 1)
		b = append(b, raw...)
	} else if r.Digest == "" {
		b = append(b, 0)
	} else {
		b = append(b, 2)
		b = appendString(b, r.Digest)
	}
	var flags byte
	if r.Purged {
		flags |= flagPurged
	}
	if r.MetaOnly {
		flags |= flagMetaOnly
	}
	b = append(b, flags)
	for _, t := range []time.Time{r.Mtime, r.Created, r.DecidedAt} {
		if t.IsZero() {
			b = append(b, 0)
			continue
		}
		tb, err := t.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("store: encode record %d: %w", r.ID, err)
		}
		b = appendString(b, string(tb))
	}
	return b, nil
}

// sha256Bytes returns the 32 bytes of a "sha256:<64 lower-case hex>"
// digest that round-trips exactly.
func sha256Bytes(d string) ([]byte, bool) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return nil, false
	}
	raw, err := hex.DecodeString(h)
	return raw, err == nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// recordReader reads the fields of a v2 record, remembering the first
// error; it never panics on malformed input.
type recordReader struct {
	b   []byte
	err error
}

var errTruncated = errors.New("truncated")

func (d *recordReader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *recordReader) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *recordReader) uint32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 && d.err == nil {
		d.err = errors.New("value out of range")
	}
	return uint32(v)
}

func (d *recordReader) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errTruncated
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *recordReader) string() string { return string(d.bytes(d.uvarint())) }

// enum is string for the fields that hold one of a few words (kind, type,
// review, status): a known word is returned without an allocation (a full
// listing decodes a million records).
func (d *recordReader) enum() string {
	b := d.bytes(d.uvarint())
	switch string(b) { // compiled without a conversion
	case "":
		return ""
	case "add":
		return "add"
	case "modify":
		return "modify"
	case "delete":
		return "delete"
	case "file":
		return "file"
	case "dir":
		return "dir"
	case "symlink":
		return "symlink"
	case "after":
		return "after"
	case "before":
		return "before"
	case "pending":
		return "pending"
	case "approved":
		return "approved"
	case "rejected":
		return "rejected"
	}
	return string(b)
}

func (d *recordReader) byte() byte {
	if b := d.bytes(1); len(b) == 1 {
		return b[0]
	}
	return 0
}

func (d *recordReader) time() time.Time {
	raw := d.bytes(d.uvarint())
	if len(raw) == 0 || d.err != nil {
		return time.Time{}
	}
	var t time.Time
	if err := t.UnmarshalBinary(raw); err != nil {
		d.err = err
	}
	return t
}

// decodeRecordV2 reads a record written by encodeRecord (b without its
// version byte).
func decodeRecordV2(b []byte) (*Record, error) {
	d := &recordReader{b: b}
	r := &Record{}
	r.ID = d.uvarint()
	r.Session = d.uvarint()
	r.Size = d.varint()
	r.Mode = d.uint32()
	r.UID = d.uint32()
	r.GID = d.uint32()
	r.Sandbox = d.string()
	r.Path = d.string()
	r.Kind = change.Kind(d.enum())
	r.Type = change.FileType(d.enum())
	r.Link = d.string()
	r.Exception = d.string()
	r.Review = change.ReviewMode(d.enum())
	r.Status = change.Status(d.enum())
	r.Reason = d.string()
	r.DecidedBy = d.string()
	r.Note = d.string()
	switch d.byte() {
	case 0:
	case 1:
		r.Digest = sha256Digest(d.bytes(32))
	case 2:
		r.Digest = d.string()
	case 3:
		r.Pruned = true
	default:
		if d.err == nil {
			d.err = errors.New("bad digest tag")
		}
	}
	flags := d.byte()
	r.Purged, r.MetaOnly = flags&flagPurged != 0, flags&flagMetaOnly != 0
	if flags&^(flagPurged|flagMetaOnly) != 0 && d.err == nil {
		d.err = errors.New("bad flag")
	}
	r.Mtime = d.time()
	r.Created = d.time()
	r.DecidedAt = d.time()
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes left over", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("store: cannot decode record: %w", d.err)
	}
	return r, nil
}

// sha256Digest is "sha256:" and sum in hex, built in one allocation.
func sha256Digest(sum []byte) string {
	var sb strings.Builder
	sb.Grow(len("sha256:") + hex.EncodedLen(len(sum)))
	sb.WriteString("sha256:")
	var buf [64]byte
	n := hex.Encode(buf[:], sum)
	sb.Write(buf[:n])
	return sb.String()
}
