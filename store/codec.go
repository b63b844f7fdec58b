package store

import (
	"bytes"
	"encoding/gob"
	"fmt"

	"github.com/spillway/spillway/exceptions"
)

// encVersion is the first byte of every stored value but records; gob
// follows. gob keeps string bytes exact (encoding/json would mangle invalid
// UTF-8). Records have their own compact encoding (record_codec.go).
const encVersion = 1

func encode(v any) ([]byte, error) {
	if r, ok := v.(*Record); ok {
		return encodeRecord(r)
	}
	var buf bytes.Buffer
	buf.WriteByte(encVersion)
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		return nil, fmt.Errorf("store: encode %T: %w", v, err)
	}
	return buf.Bytes(), nil
}

// decode fills v from b; kind names the key kind in errors. It never panics.
func decode(kind string, b []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: cannot decode %s: %v", kind, r)
		}
	}()
	if len(b) == 0 {
		return fmt.Errorf("store: cannot decode %s: empty value", kind)
	}
	if b[0] != encVersion {
		return fmt.Errorf("store: cannot decode %s: unknown encoding version %d", kind, b[0])
	}
	if err := decodeGob(b[1:], v); err != nil {
		return fmt.Errorf("store: cannot decode %s: %w", kind, err)
	}
	return nil
}

// decodeRecord reads a record in either encoding: v2, or gob (v1) as
// written before schema 2 and left by an unfinished migration.
func decodeRecord(b []byte) (*Record, error) {
	if len(b) > 0 && b[0] == recordV2 {
		return decodeRecordV2(b[1:])
	}
	r := new(Record)
	if err := decode("record", b, r); err != nil {
		return nil, err
	}
	return r, nil
}

func decodeEvent(b []byte) (*Event, error) {
	e := new(Event)
	if err := decode("audit entry", b, e); err != nil {
		return nil, err
	}
	return e, nil
}

func decodeException(b []byte) (*exceptions.Exception, error) {
	e := new(exceptions.Exception)
	if err := decode("exception", b, e); err != nil {
		return nil, err
	}
	return e, nil
}
