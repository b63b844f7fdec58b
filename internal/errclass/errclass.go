// Package errclass gives an error one of containerd's errdefs classes
// (github.com/containerd/errdefs) without changing its message.
package errclass

import (
	"errors"
	"fmt"
)

// classed is err, matching class too.
type classed struct{ err, class error }

func (c *classed) Error() string   { return c.err.Error() }
func (c *classed) Unwrap() []error { return []error{c.err, c.class} }

// New returns an error with message msg that matches class.
func New(class error, msg string) error { return &classed{errors.New(msg), class} }

// Errorf formats an error, as fmt.Errorf does, that also matches class.
func Errorf(class error, format string, args ...any) error {
	return &classed{fmt.Errorf(format, args...), class}
}
