package persist

import (
	"context"
	"errors"
	"strconv"

	"github.com/spillway/spillway/store"
)

// Kinds of names that Names lists, for shell completion.
const (
	NameImages     = "images"
	NameSandboxes  = "sandboxes"
	NameExceptions = "exceptions" // active ones
	NamePending    = "pending"    // ids of records that wait for review
)

var errEnough = errors.New("enough names")

// Names returns up to limit names of one kind, in the store's order. It
// reads only names, never a sandbox's state.
func (e *Env) Names(kind string, limit int) ([]string, error) {
	var out []string
	err := e.store.View(func(tx *store.Tx) error {
		switch kind {
		case NameImages:
			ims, err := tx.ListImages()
			for _, im := range ims {
				out = append(out, im.Name)
			}
			return err
		case NameSandboxes:
			sbs, err := tx.ListSandboxes()
			for _, sb := range sbs {
				out = append(out, sb.Name)
			}
			return err
		case NameExceptions:
			xs, err := tx.ListExceptions("")
			for _, x := range xs {
				if x.Active(e.Now()) {
					out = append(out, x.ID)
				}
			}
			return err
		case NamePending:
			return tx.ForEachPending(context.Background(), "", func(r *store.Record) error {
				out = append(out, strconv.FormatUint(r.ID, 10))
				if len(out) >= limit {
					return errEnough
				}
				return nil
			})
		}
		return invalidf("unknown kind of name %q", kind)
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, err
}
