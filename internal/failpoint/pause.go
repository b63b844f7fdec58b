package failpoint

import (
	"os"
	"strings"
	"sync"
	"time"
)

// SPILLWAY_FAILPOINT_PAUSE=NAME:FILE makes the first hit of NAME create
// FILE and wait until it is removed: a test holds a command at a step
// boundary while it runs others beside it.
var pauseOnce sync.Once

func pause(name string) {
	v := os.Getenv("SPILLWAY_FAILPOINT_PAUSE")
	if v == "" {
		return
	}
	point, file, ok := strings.Cut(v, ":")
	if !ok || point != name || file == "" {
		return
	}
	pauseOnce.Do(func() {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return
		}
		f.Close()
		for {
			if _, err := os.Lstat(file); os.IsNotExist(err) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
