package store

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"

	"github.com/jackc/pgx/v5/pgtype"
)

// The driver passes keys and values to PostgreSQL as bytea[] parameters
// ([][]byte): a close's staging and commit some 1,000 elements. pgx
// encodes a [][]byte through reflection, boxing each element and looking
// its plan up again; that was 8 % of a fleet close's client CPU. A
// connection's type map gets byteaArrayCodec, which writes a [][]byte in
// the binary array format itself and leaves every other value, and every
// scan, to pgx's codec.

// byteaArrayCodec is pgx's codec of bytea[] with its own encoder of
// [][]byte in the binary format.
type byteaArrayCodec struct {
	pgtype.Codec
}

// useByteaArrayCodec puts byteaArrayCodec in m for bytea[].
func useByteaArrayCodec(m *pgtype.Map) {
	t, ok := m.TypeForOID(pgtype.ByteaArrayOID)
	if !ok {
		return
	}
	if _, done := t.Codec.(byteaArrayCodec); done {
		return
	}
	m.RegisterType(&pgtype.Type{Name: t.Name, OID: t.OID, Codec: byteaArrayCodec{t.Codec}})
}

func (c byteaArrayCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if _, ok := value.([][]byte); ok && format == pgtype.BinaryFormatCode {
		return encodeByteaArray{}
	}
	return c.Codec.PlanEncode(m, oid, format, value)
}

// encodeByteaArray writes a [][]byte as a one-dimensional bytea[] in the
// binary format: what pgx's ArrayCodec writes, byte for byte (nil is
// NULL; a nil element is a NULL element).
type encodeByteaArray struct{}

func (encodeByteaArray) Encode(value any, buf []byte) ([]byte, error) {
	a := value.([][]byte)
	if a == nil {
		return nil, nil
	}
	if len(a) > math.MaxInt32 {
		return nil, errTooManyElements
	}
	n := 20 + 4*len(a)
	for _, e := range a {
		n += len(e)
	}
	buf = slices.Grow(buf, n)
	buf = binary.BigEndian.AppendUint32(buf, 1) // dimensions (pgx writes an empty array so too)
	nulls := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, 0) // set below if an element is NULL
	buf = binary.BigEndian.AppendUint32(buf, pgtype.ByteaOID)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(a)))
	buf = binary.BigEndian.AppendUint32(buf, 1) // lower bound
	for _, e := range a {
		if e == nil {
			binary.BigEndian.PutUint32(buf[nulls:], 1)
			buf = binary.BigEndian.AppendUint32(buf, math.MaxUint32) // -1: NULL
			continue
		}
		if len(e) > math.MaxInt32 {
			return nil, errTooManyElements
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(e)))
		buf = append(buf, e...)
	}
	return buf, nil
}

// errTooManyElements: an array or element past what the format counts.
var errTooManyElements = errors.New("store: a bytea[] parameter or element too large for PostgreSQL's array format")
