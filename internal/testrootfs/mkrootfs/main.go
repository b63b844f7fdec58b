// Command mkrootfs writes the small busybox rootfs of the tests and the demo
// into a directory: go run ./internal/testrootfs/mkrootfs DIR
package main

import (
	"fmt"
	"os"

	"github.com/spillway/spillway/internal/testrootfs"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkrootfs DIR")
		os.Exit(2)
	}
	if err := testrootfs.Build(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mkrootfs:", err)
		os.Exit(1)
	}
}
