package vm

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/spillway/spillway/vm/proto"
)

// probeBoot boots the guest once in probe mode: init reports READY and
// powers off.
func (c *Config) probeBoot(ctx context.Context, stateRoot string) error {
	dir, err := os.MkdirTemp(Dir(stateRoot), "probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m := &Machine{Config: c, Dir: dir, Req: proto.Request{Mode: proto.ModeProbe, TimeNanos: time.Now().UnixNano()},
		BootTimeout: 60 * time.Second}
	res, err := m.Run(ctx)
	if err != nil {
		return err
	}
	if !res.Ready {
		return errors.New("the probe guest did not report")
	}
	return nil
}

// Probe boots the configured guest once and returns how long it took.
func (c *Config) Probe(ctx context.Context, stateRoot string) (time.Duration, error) {
	t := time.Now()
	err := c.probeBoot(ctx, stateRoot)
	return time.Since(t), err
}
