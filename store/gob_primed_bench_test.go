package store

import (
	"testing"
	"time"
)

// BenchmarkDecodeEvent decodes an audit entry with a new Decoder (as
// decode did before decodeGob) and through decodeGob, side by side:
//
//	go test -run XXX -bench DecodeEvent -benchmem ./store/
func BenchmarkDecodeEvent(b *testing.B) {
	enc, err := encode(&Event{V: 2, ChainSeq: 7, Seq: 12345, Time: time.Now(), Type: "sandbox.close", Sandbox: "docs", User: "root",
		Data: map[string]string{"session": "3", "generation": "3", "records": "50"}})
	if err != nil {
		b.Fatal(err)
	}
	v := enc[1:]
	b.Run("new-decoder", func(b *testing.B) {
		for b.Loop() {
			var e Event
			if err := freshDecode(v, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("primed", func(b *testing.B) {
		for b.Loop() {
			var e Event
			if err := decodeGob(v, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
