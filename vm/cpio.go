package vm

import (
	"fmt"
	"io"
)

// cpioWriter writes a newc ("070701") cpio archive, the format the kernel
// unpacks as an initramfs: a 110-byte ASCII header, the name, padding to 4
// bytes, the data, padding, and a TRAILER!!! entry at the end.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error
}

const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioLink = 0o120000
)

func (c *cpioWriter) entry(name string, mode uint32, data []byte) error {
	if c.err != nil {
		return c.err
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf := append([]byte(hdr), name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, pad4(len(buf)))...)
	buf = append(buf, data...)
	buf = append(buf, make([]byte, pad4(len(data)))...)
	_, c.err = c.w.Write(buf)
	return c.err
}

func pad4(n int) int { return (4 - n%4) % 4 }

// dir, file and symlink add one entry each; close writes the trailer.
func (c *cpioWriter) dir(name string) error { return c.entry(name, cpioDir|0o755, nil) }
func (c *cpioWriter) file(name string, perm uint32, data []byte) error {
	return c.entry(name, cpioReg|perm, data)
}
func (c *cpioWriter) close() error { return c.entry("TRAILER!!!", 0, nil) }
