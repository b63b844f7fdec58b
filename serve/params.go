package serve

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/containerd/errdefs"
)

// numberParam reads query parameter name as a whole number: 0 when it is
// absent or empty, and an invalid-argument error (400) when it is not a
// number, so a mistyped ?after= does not quietly show the first page.
func numberParam(q url.Values, name string) (uint64, error) {
	s := q.Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q is not a whole number", errdefs.ErrInvalidArgument, name, s)
	}
	return n, nil
}

// check refuses a filter no record can match because a value is not one
// a record has: a kind other than add, modify or delete.
func (f filter) check() error {
	switch f.Kind {
	case "", "add", "modify", "delete":
		return nil
	}
	return fmt.Errorf("%w: kind=%q is not add, modify or delete", errdefs.ErrInvalidArgument, f.Kind)
}
