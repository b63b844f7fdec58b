package persist

import (
	"io/fs"
	"syscall"
)

func statOf(fi fs.FileInfo) *syscall.Stat_t { return fi.Sys().(*syscall.Stat_t) }
