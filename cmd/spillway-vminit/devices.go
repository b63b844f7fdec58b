package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spillway/spillway/vm/proto"
)

// devWait bounds the wait for the virtio devices to appear.
const devWait = 30 * time.Second

// openPorts opens the virtio-serial ports by name. Init holds them open for
// the whole boot, so a process of CMD that reaches /dev gets EBUSY on them.
func (g *guest) openPorts() error {
	want := []string{proto.PortCtl}
	if g.req.Mode == proto.ModeRun {
		want = append(want, proto.PortStdin, proto.PortStdout, proto.PortStderr)
	}
	if g.req.Share == proto.ShareNone || g.req.Mode == proto.ModeRescue {
		want = append(want, proto.PortChanges)
	}
	g.ports = map[string]*os.File{}
	deadline := time.Now().Add(devWait)
	for {
		found := portNames()
		missing := ""
		for _, n := range want {
			if g.ports[n] != nil {
				continue
			}
			dev, ok := found[n]
			if !ok {
				missing = n
				continue
			}
			f, err := os.OpenFile(dev, os.O_RDWR, 0)
			if err != nil {
				missing = n
				continue
			}
			g.ports[n] = f
			if n == proto.PortCtl {
				g.ctl = &ctlPort{f: f}
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("virtio-serial port %s not found", missing)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// portNames maps port names to their /dev nodes.
func portNames() map[string]string {
	out := map[string]string{}
	ents, _ := os.ReadDir("/sys/class/virtio-ports")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "name"))
		if err == nil {
			out[strings.TrimSpace(string(b))] = "/dev/" + e.Name()
		}
	}
	return out
}

// disk returns the /dev node of the virtio disk with this serial.
func disk(serial string) (string, error) {
	deadline := time.Now().Add(devWait)
	for {
		ents, _ := os.ReadDir("/sys/block")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "serial"))
			if err == nil && strings.TrimSpace(string(b)) == serial {
				dev := "/dev/" + e.Name()
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("disk %s not found", serial)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ctlPort writes whole lines to the control port.
type ctlPort struct {
	mu sync.Mutex
	f  *os.File
}

func (c *ctlPort) send(fields ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.f.Write([]byte(strings.Join(fields, " ") + "\n"))
}
