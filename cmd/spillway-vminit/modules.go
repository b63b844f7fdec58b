package main

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// loadModules loads /lib/modules/<name>.ko in the order /lib/modules/order
// lists them (dependencies first). A module whose device is absent fails
// to bind, which is harmless; the mounts that need it fail later, clearly.
func loadModules() {
	data, err := os.ReadFile("/lib/modules/order")
	if err != nil {
		return
	}
	for _, name := range strings.Fields(string(data)) {
		f, err := os.Open(filepath.Join("/lib/modules", name+".ko"))
		if err != nil {
			continue
		}
		unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
	}
}
