package store

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// gobValues are values of the gob-encoded types, some with fields left
// zero (gob leaves them out).
func gobValues(r *rand.Rand, n int) []any {
	var out []any
	for i := range n {
		now := time.Unix(int64(r.IntN(1<<30)), int64(r.IntN(1e9))).UTC()
		switch i % 3 {
		case 0:
			e := &Event{V: uint8(r.IntN(3)), ChainSeq: r.Uint64(), Seq: uint64(i + 1), Time: now, Type: "sandbox.close", Sandbox: fmt.Sprintf("s%d", r.IntN(5))}
			if r.IntN(2) == 0 {
				e.Data = map[string]string{"session": fmt.Sprint(i), "\xff odd": "v\x00"}
				e.User = "root"
			}
			e.Prev[r.IntN(32)] = byte(i)
			out = append(out, e)
		case 1:
			out = append(out, &Sandbox{Name: fmt.Sprintf("docs%d", i), Image: "base", Created: now, State: StateClosed, Session: uint64(r.IntN(9)), Generation: uint64(r.IntN(9))})
		default:
			out = append(out, &Session{Sandbox: "docs", N: uint64(i), State: StateOpen, Opened: now, Host: fmt.Sprintf("h%d", r.IntN(3)), Token: r.Uint64()})
		}
	}
	return out
}

// freshDecode is what decode did before decodeGob: a Decoder per value.
func freshDecode(b []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return gob.NewDecoder(bytes.NewReader(b)).Decode(v)
}

// TestDecodeGob: values decoded through primed Decoders (decodeGob) equal
// those a new Decoder per value gives, for every stored gob type, over
// and over, from several goroutines at once.
func TestDecodeGob(t *testing.T) {
	vals := gobValues(rand.New(rand.NewPCG(1, 2)), 300)
	encs := make([][]byte, len(vals))
	for i, v := range vals {
		b, err := encode(v)
		if err != nil {
			t.Fatal(err)
		}
		encs[i] = b[1:]
		if gobValueStart(encs[i]) <= 0 {
			t.Fatalf("value %d (%T): no type definitions found before its value", i, v)
		}
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 3 {
				for i := range encs {
					j := (i*7 + g + round) % len(encs)
					want := reflect.New(reflect.TypeOf(vals[j]).Elem()).Interface()
					got := reflect.New(reflect.TypeOf(vals[j]).Elem()).Interface()
					if err := freshDecode(encs[j], want); err != nil {
						t.Error(err)
						return
					}
					if err := decodeGob(encs[j], got); err != nil || !reflect.DeepEqual(got, want) {
						t.Errorf("value %d: %+v (%v), want %+v", j, got, err, want)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	// The values went through primed Decoders (one per type: one process
	// wrote them all; other tests may have primed more).
	primed := map[string]int{}
	gobPrimedMu.Lock()
	for k := range gobPrimedBy {
		primed[k[:strings.IndexByte(k, 0)]]++
	}
	gobPrimedMu.Unlock()
	for _, typ := range []string{"*store.Event", "*store.Sandbox", "*store.Session"} {
		if primed[typ] < 1 {
			t.Errorf("no primed Decoder of %s (all: %v)", typ, primed)
		}
	}
}

// TestDecodeGobDamaged: a value cut short or with a byte changed anywhere
// fails (or succeeds) through decodeGob as through a new Decoder, with the
// same value, never by a panic; the primed Decoders decode good values
// right after.
func TestDecodeGobDamaged(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	vals := gobValues(r, 3)
	for _, v := range vals {
		b, err := encode(v)
		if err != nil {
			t.Fatal(err)
		}
		good := b[1:]
		typ := reflect.TypeOf(v).Elem()
		var damaged [][]byte
		for n := range len(good) {
			damaged = append(damaged, good[:n])
			for _, x := range []byte{0x00, 0xff, good[n] ^ 0x01} {
				d := bytes.Clone(good)
				d[n] = x
				damaged = append(damaged, d)
			}
		}
		for i, d := range damaged {
			want, got := reflect.New(typ).Interface(), reflect.New(typ).Interface()
			werr := freshDecode(d, want)
			gerr := func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("panic: %v", r)
					}
				}()
				return decodeGob(d, got)
			}()
			if (werr == nil) != (gerr == nil) || werr == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("%T, damaged value %d: %v, %+v; a new Decoder: %v, %+v", v, i, gerr, got, werr, want)
			}
			ok := reflect.New(typ).Interface()
			if err := decodeGob(good, ok); err != nil || !reflect.DeepEqual(ok, v) {
				t.Fatalf("%T after damaged value %d: %+v (%v), want %+v", v, i, ok, err, v)
			}
		}
	}
}
