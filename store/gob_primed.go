package store

import (
	"bytes"
	"encoding/gob"
	"reflect"
	"sync"
)

// Every gob value in the store was written by an Encoder of its own
// (encode), so each begins with the definitions of its types, and a new
// Decoder compiles its decoding engine again for every value: half the
// CPU of `audit verify` and of `ls`. The definitions of one Go type are
// the same bytes in every value a process wrote (the type ids are the
// writing process's, so processes may differ), so a Decoder that has read
// them once decodes the value part of every later value that begins with
// the same bytes. decodeGob keeps one such Decoder per Go type and
// definitions prefix.

// gobPrimed is a Decoder that has read one definitions prefix; in feeds it
// the value messages.
type gobPrimed struct {
	mu  sync.Mutex
	dec *gob.Decoder
	in  *bytes.Reader
}

// gobPrimedMax bounds how many primed Decoders are kept (one per Go type
// and prefix: a handful of prefixes per type in practice).
const gobPrimedMax = 256

var (
	gobPrimedMu sync.Mutex
	gobPrimedBy = map[string]*gobPrimed{} // Go type ‖ NUL ‖ prefix
)

// decodeGob decodes the gob stream b, written by one Encoder for one
// value, into v, through a primed Decoder when one read b's prefix.
func decodeGob(b []byte, v any) error {
	start := gobValueStart(b)
	if start <= 0 {
		return gob.NewDecoder(bytes.NewReader(b)).Decode(v)
	}
	key := reflect.TypeOf(v).String() + "\x00" + string(b[:start])
	gobPrimedMu.Lock()
	p := gobPrimedBy[key]
	gobPrimedMu.Unlock()
	if p != nil && p.decode(b[start:], v) {
		return nil
	}
	// No primed Decoder yet, or it failed (its state is then unknown: it
	// is dropped): a new one reads b whole and, on success, is kept.
	if p != nil {
		gobPrimedMu.Lock()
		delete(gobPrimedBy, key)
		gobPrimedMu.Unlock()
	}
	in := bytes.NewReader(b)
	dec := gob.NewDecoder(in)
	if err := dec.Decode(v); err != nil {
		return err
	}
	if in.Len() == 0 {
		gobPrimedMu.Lock()
		if len(gobPrimedBy) < gobPrimedMax {
			gobPrimedBy[key] = &gobPrimed{dec: dec, in: in}
		}
		gobPrimedMu.Unlock()
	}
	return nil
}

// decode decodes the value message msg into v and reports whether it
// read it whole without error. A panic inside gob counts as a failure.
func (p *gobPrimed) decode(msg []byte, v any) (ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	p.in.Reset(msg)
	return p.dec.Decode(v) == nil && p.in.Len() == 0
}

// gobValueStart returns where the value message of the gob stream b
// begins, after its type definitions (0: none; -1: not a stream this
// recognises). A message is a byte count and that many bytes, which begin
// with a type id: negative for a definition, positive for a value.
func gobValueStart(b []byte) int {
	for i := 0; i < len(b); {
		n, w := gobUint(b[i:])
		if w == 0 || n > uint64(len(b)-i-w) {
			return -1
		}
		id, w2 := gobUint(b[i+w : i+w+int(n)])
		if w2 == 0 {
			return -1
		}
		if id&1 == 0 { // a non-negative int: gob stores i<<1 for i >= 0
			if id == 0 {
				return -1
			}
			return i
		}
		i += w + int(n)
	}
	return -1
}

// gobUint reads a gob unsigned integer: a byte below 128 is the value;
// otherwise the byte is the negated count of big-endian bytes that follow.
// w is how many bytes it took (0: malformed).
func gobUint(b []byte) (x uint64, w int) {
	if len(b) == 0 {
		return 0, 0
	}
	if b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	n := int(-int8(b[0]))
	if n > 8 || n >= len(b) {
		return 0, 0
	}
	for _, c := range b[1 : 1+n] {
		x = x<<8 | uint64(c)
	}
	return x, 1 + n
}
