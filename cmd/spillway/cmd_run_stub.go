package main

import (
	"context"

	"github.com/spillway/spillway/store"
)

// beforeUnmount refuses to close while processes use the sandbox, or stops
// them with force.
func beforeUnmount(t *term, force bool) func(context.Context, *store.Sandbox) error {
	return nil
}
