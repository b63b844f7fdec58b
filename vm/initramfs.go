package vm

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spillway/spillway/internal/atomicfile"
	"github.com/spillway/spillway/vm/proto"
)

// InitName is the file name of the guest init binary.
const InitName = "spillway-vminit"

// FindInit locates the guest init: the path given, else $SPILLWAY_VMINIT,
// else spillway-vminit next to the running spillway binary (where
// scripts/install.sh puts it), else /usr/local/lib/spillway or
// /usr/lib/spillway.
func FindInit(given string) (string, error) {
	cands := []string{given, os.Getenv("SPILLWAY_VMINIT")}
	if exe, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(exe), InitName))
	}
	cands = append(cands, "/usr/local/lib/spillway/"+InitName, "/usr/lib/spillway/"+InitName)
	for i, c := range cands {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return c, nil
		} else if i < 2 {
			return "", fmt.Errorf("guest init %s: not a regular file", c)
		}
	}
	return "", errors.New("guest init " + InitName + " not found: install it next to spillway (scripts/install.sh), or pass --init PATH")
}

// checkInitProto refuses an init binary of another protocol than this
// spillway's (no proto.InitMarker in it): an older init's changes stream
// marks no whiteout, so every deletion in its guests would persist as a
// file named .wh.NAME. The binary is read, never run on the host.
func checkInitProto(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("guest init %s: %w", path, err)
	}
	if !bytes.Contains(data, []byte(proto.InitMarker)) {
		return fmt.Errorf("guest init %s is of another spillway (it does not say %q): install the %s built with this one (scripts/install.sh), or pass --init PATH", path, proto.InitMarker, InitName)
	}
	return nil
}

// buildInitramfs writes a gzip'd newc cpio with /init and the modules (in
// /lib/modules, load order in /lib/modules/order) to dst, atomically.
func buildInitramfs(dst, initBin string, k *Kernel, want []string) ([]string, error) {
	order, idx, err := resolveModules(k.Modules, want)
	if err != nil {
		return nil, err
	}
	initData, err := os.ReadFile(initBin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	c := &cpioWriter{w: zw}
	for _, d := range []string{"dev", "proc", "sys", "lib", "lib/modules", "newroot", "spw"} {
		c.dir(d)
	}
	c.file("init", 0o755, initData)
	for _, m := range order {
		data, err := os.ReadFile(idx[m])
		if err != nil {
			return nil, err
		}
		c.file("lib/modules/"+m+".ko", 0o644, stripSignature(data))
	}
	c.file("lib/modules/order", 0o644, []byte(strings.Join(order, "\n")+"\n"))
	if err := c.close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return order, writeAtomic(dst, buf.Bytes())
}

// requestCpio is the per-run archive appended to the initramfs: the
// kernel unpacks concatenated archives, so /spw/request.json joins /init.
func requestCpio(req []byte) []byte {
	var buf bytes.Buffer
	c := &cpioWriter{w: &buf}
	c.dir("spw")
	c.file("spw/request.json", 0o600, req)
	c.close()
	return buf.Bytes()
}

func writeAtomic(dst string, data []byte) error {
	f, err := atomicfile.Create(filepath.Dir(dst), ".tmp-")
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit(dst, atomicfile.Replace)
}

// sigMagic ends a signed module (the kernel's MODULE_SIG_STRING).
const sigMagic = "~Module signature appended~\n"

// stripSignature drops a module's appended signature: the kernel then
// loads it without checking it (and says the kernel is tainted), which
// under TCG saves the RSA checks of every boot. The modules come from the
// kernel package spillway boots, not from the guest.
func stripSignature(data []byte) []byte {
	n := len(data) - len(sigMagic)
	if n < 12 || string(data[n:]) != sigMagic {
		return data
	}
	// struct module_signature: 8 bytes, then sig_len (big-endian u32).
	info := data[n-12 : n]
	sigLen := int(binary.BigEndian.Uint32(info[8:]))
	end := n - 12 - int(info[3]) - int(info[4]) - sigLen // signer_len, key_id_len
	if end <= 0 || end > n {
		return data
	}
	return data[:end]
}
