package view

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/spillway/spillway/persist"
)

// TestRecordLinkExact: two symlink targets that differ only in bytes that
// are not UTF-8 print the same "link" text but distinct exact
// "link_bytes" (SPEC: JSON keeps every name exact); a valid target has no
// link_bytes.
func TestRecordLinkExact(t *testing.T) {
	enc := func(link string) map[string]any {
		t.Helper()
		b, err := json.Marshal(NewRecord(&persist.Record{ID: 1, Path: "/home/user/l", Type: "symlink", Link: link}))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := enc("tgt\xfe"), enc("tgt\xfd")
	if a["link"] != b["link"] {
		t.Errorf("link texts %q and %q: want the same replacement text", a["link"], b["link"])
	}
	var ra, rb []byte
	for m, out := range map[*map[string]any]*[]byte{&a: &ra, &b: &rb} {
		s, _ := (*m)["link_bytes"].(string)
		var raw []byte
		if err := json.Unmarshal([]byte(`"`+s+`"`), &raw); err != nil {
			t.Fatal(err)
		}
		*out = raw
	}
	if !bytes.Equal(ra, []byte("tgt\xfe")) || !bytes.Equal(rb, []byte("tgt\xfd")) {
		t.Errorf("link_bytes %q and %q: want the exact targets", ra, rb)
	}
	if _, ok := enc("../etc")["link_bytes"]; ok {
		t.Error("a valid UTF-8 target has link_bytes")
	}
}
