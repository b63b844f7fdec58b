package store

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/spillway/spillway/internal/pgtest"
)

// byteaArrays are the [][]byte parameters the tests encode.
var byteaArrays = [][][]byte{
	nil,
	{},
	{{}},
	{nil},
	{[]byte("k"), nil, {}, bytes.Repeat([]byte{0, 0xff}, 300)},
	{[]byte("cs:a\x00/home/user\x00"), []byte("v")},
}

// TestByteaArrayEncodesAsPgx: the codec's encoding of a [][]byte is pgx's
// own, byte for byte, and it leaves other values to pgx.
func TestByteaArrayEncodesAsPgx(t *testing.T) {
	plain := pgtype.NewMap()
	ours := pgtype.NewMap()
	useByteaArrayCodec(ours)
	useByteaArrayCodec(ours) // twice: no codec wrapping itself
	if tp, _ := ours.TypeForOID(pgtype.ByteaArrayOID); tp == nil {
		t.Fatal("no bytea[] type")
	} else if c, ok := tp.Codec.(byteaArrayCodec); !ok {
		t.Fatalf("bytea[] codec %T", tp.Codec)
	} else if _, twice := c.Codec.(byteaArrayCodec); twice {
		t.Fatal("the codec wraps itself")
	}
	for i, a := range byteaArrays {
		want, err := plain.Encode(pgtype.ByteaArrayOID, pgtype.BinaryFormatCode, a, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ours.PlanEncode(pgtype.ByteaArrayOID, pgtype.BinaryFormatCode, a).(encodeByteaArray); !ok {
			t.Fatalf("array %d: not encoded by encodeByteaArray", i)
		}
		got, err := ours.Encode(pgtype.ByteaArrayOID, pgtype.BinaryFormatCode, a, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("array %d: encoded %x, pgx %x", i, got, want)
		}
	}
	// Text, and values of other types, are pgx's.
	if _, ok := ours.PlanEncode(pgtype.ByteaArrayOID, pgtype.TextFormatCode, [][]byte{[]byte("a")}).(encodeByteaArray); ok {
		t.Error("text format encoded by encodeByteaArray")
	}
	if _, ok := ours.PlanEncode(pgtype.ByteaArrayOID, pgtype.BinaryFormatCode, []string{"a"}).(encodeByteaArray); ok {
		t.Error("[]string encoded by encodeByteaArray")
	}
}

// TestByteaArrayRoundTrip: PostgreSQL reads the arrays as written
// (elements, NULLs, empty ones) on a connection of the driver's pools.
func TestByteaArrayRoundTrip(t *testing.T) {
	ctx := context.Background()
	pools, err := newPGPools(pgtest.URL(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { pools.pool.Close(); pools.snapPool.Close() }()
	c, err := pools.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	if tp, _ := c.Conn().TypeMap().TypeForOID(pgtype.ByteaArrayOID); tp == nil {
		t.Fatal("no bytea[] type")
	} else if _, ok := tp.Codec.(byteaArrayCodec); !ok {
		t.Fatalf("a pool's connection encodes bytea[] with %T", tp.Codec)
	}
	for i, a := range byteaArrays {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
			var n *int
			var text string
			var back [][]byte
			err := c.QueryRow(ctx, `SELECT cardinality($1::bytea[]), coalesce($1::bytea[]::text, 'NULL'), $1::bytea[]`, mode, a).Scan(&n, &text, &back)
			if err != nil {
				t.Fatalf("array %d: %v", i, err)
			}
			if a == nil {
				if n != nil || text != "NULL" {
					t.Errorf("nil array: read as %v %q", n, text)
				}
				continue
			}
			if n == nil || *n != len(a) || len(back) != len(a) {
				t.Fatalf("array %d (%d elements): read %v elements, back %d (%s)", i, len(a), n, len(back), text)
			}
			for j := range a {
				if !bytes.Equal(back[j], a[j]) || (back[j] == nil) != (a[j] == nil) {
					t.Errorf("array %d element %d: %q back as %q (%s)", i, j, a[j], back[j], text)
				}
			}
			if i == len(byteaArrays)-1 && text != fmt.Sprintf(`{"\\x%x","\\x76"}`, a[0]) {
				t.Errorf("array %d read as %s", i, text)
			}
		}
	}
}
