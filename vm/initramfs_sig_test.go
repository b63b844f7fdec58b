package vm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestStripSignature: a signed module of the host's kernel loses exactly
// its signature; an unsigned one is left alone.
func TestStripSignature(t *testing.T) {
	if got := stripSignature([]byte("\x7fELF plain")); string(got) != "\x7fELF plain" {
		t.Fatalf("unsigned changed: %q", got)
	}
	// A signed module as sign-file writes it: the PKCS#7 blob, then
	// struct module_signature (id_type 2, sig_len big-endian), then the magic.
	signed := append([]byte("\x7fELF module"), "PKCS7-BLOB"...)
	signed = append(signed, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 10)
	signed = append(signed, sigMagic...)
	if got := stripSignature(signed); string(got) != "\x7fELF module" {
		t.Fatalf("synthetic: %q", got)
	}
	// And the guest kernel's own, when this host has one.
	mods, _ := filepath.Glob("/lib/modules/*/kernel/drivers/virtio/virtio.ko")
	for _, m := range mods {
		checkStripped(t, m)
	}
}

func checkStripped(t *testing.T, mod string) {
	data, err := os.ReadFile(mod)
	if err != nil {
		t.Fatal(err)
	}
	got := stripSignature(data)
	if !bytes.HasSuffix(data, []byte(sigMagic)) {
		if !bytes.Equal(got, data) {
			t.Fatal("unsigned module changed")
		}
		return
	}
	if len(got) >= len(data)-len(sigMagic) || !bytes.HasPrefix(data, got) || !bytes.HasPrefix(got, []byte("\x7fELF")) {
		t.Fatalf("stripped %d of %d bytes", len(data)-len(got), len(data))
	}
	if bytes.Contains(got[len(got)-64:], []byte("Module signature")) {
		t.Fatal("signature left")
	}
}
