package store

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/names"
)

// GetImage returns the image name.
func (tx *Tx) GetImage(name string) (*Image, error) {
	im := new(Image)
	if err := tx.getObj("image", name, key(pImage, name), im); err != nil {
		return nil, err
	}
	if err := checkRowName("image", name, im.Name); err != nil {
		return nil, err
	}
	return im, nil
}

// PutImage inserts or updates an image.
func (tx *Tx) PutImage(im *Image) error {
	if err := checkName("image", im.Name); err != nil {
		return err
	}
	return tx.put(key(pImage, im.Name), im)
}

// DeleteImage removes an image.
func (tx *Tx) DeleteImage(name string) error { return tx.delObj("image", name, key(pImage, name)) }

// ListImages returns every image, sorted by name.
func (tx *Tx) ListImages() ([]*Image, error) {
	var out []*Image
	err := tx.scan([]byte(pImage), true, func(k, v []byte) error {
		im := new(Image)
		if err := decode("image", v, im); err != nil {
			return err
		}
		if err := checkRowName("image", keyName(k, pImage), im.Name); err != nil {
			return err
		}
		out = append(out, im)
		return nil
	})
	return out, err
}

// GetSandbox returns the sandbox name.
func (tx *Tx) GetSandbox(name string) (*Sandbox, error) {
	sb := new(Sandbox)
	if err := tx.getObj("sandbox", name, key(pSandbox, name), sb); err != nil {
		return nil, err
	}
	if err := checkRowName("sandbox", name, sb.Name); err != nil {
		return nil, err
	}
	return sb, nil
}

// PutSandbox inserts or updates a sandbox.
func (tx *Tx) PutSandbox(sb *Sandbox) error {
	if err := checkName("sandbox", sb.Name); err != nil {
		return err
	}
	return tx.put(key(pSandbox, sb.Name), sb)
}

// DeleteSandbox removes the sandbox entry only (its sessions, exceptions and
// records are the caller's to remove or keep).
func (tx *Tx) DeleteSandbox(name string) error {
	return tx.delObj("sandbox", name, key(pSandbox, name))
}

// SandboxNames returns the name of every sandbox, in order, reading keys
// only: listing 10,000 sandboxes need not decode 10,000 values.
func (tx *Tx) SandboxNames() ([]string, error) {
	var out []string
	err := tx.scan([]byte(pSandbox), false, func(k, _ []byte) error {
		if len(k) <= len(pSandbox) || k[len(k)-1] != 0 {
			return fmt.Errorf("store: malformed sandbox key %q", k)
		}
		out = append(out, string(k[len(pSandbox):len(k)-1]))
		return nil
	})
	return out, err
}

// ListSandboxes returns every sandbox, sorted by name.
func (tx *Tx) ListSandboxes() ([]*Sandbox, error) {
	var out []*Sandbox
	err := tx.scan([]byte(pSandbox), true, func(k, v []byte) error {
		sb := new(Sandbox)
		if err := decode("sandbox", v, sb); err != nil {
			return err
		}
		if err := checkRowName("sandbox", keyName(k, pSandbox), sb.Name); err != nil {
			return err
		}
		out = append(out, sb)
		return nil
	})
	return out, err
}

// GetSession returns session n of a sandbox.
func (tx *Tx) GetSession(sandbox string, n uint64) (*Session, error) {
	se := new(Session)
	if err := tx.getObj("session", fmt.Sprintf("%s#%d", sandbox, n), key(pSession, sandbox, n), se); err != nil {
		return nil, err
	}
	return se, nil
}

// PutSession inserts or updates a session.
func (tx *Tx) PutSession(se *Session) error {
	if err := checkName("sandbox", se.Sandbox); err != nil {
		return err
	}
	return tx.put(key(pSession, se.Sandbox, se.N), se)
}

// ListSessions returns the sessions of a sandbox, ordered by N.
func (tx *Tx) ListSessions(sandbox string) ([]*Session, error) {
	if err := checkName("sandbox", sandbox); err != nil {
		return nil, err
	}
	var out []*Session
	err := tx.scan(key(pSession, sandbox), true, func(k, v []byte) error {
		se := new(Session)
		if err := decode("session", v, se); err != nil {
			return err
		}
		out = append(out, se)
		return nil
	})
	return out, err
}

// PutException inserts or updates an exception (id "exN").
func (tx *Tx) PutException(e *exceptions.Exception) error {
	n, err := exceptionNumber(e.ID)
	if err != nil {
		return err
	}
	if err := checkName("sandbox", e.Sandbox); err != nil {
		return err
	}
	old, err := tx.GetException(e.ID)
	switch {
	case err == nil && old.Sandbox != e.Sandbox:
		if err := tx.del(key(pExcSb, old.Sandbox, n)); err != nil {
			return err
		}
	case err != nil && !isNotFound(err):
		return err
	}
	if err := tx.put(key(pExc, n), e); err != nil {
		return err
	}
	return tx.set(key(pExcSb, e.Sandbox, n), nil)
}

// GetException returns the exception id.
func (tx *Tx) GetException(id string) (*exceptions.Exception, error) {
	n, err := exceptionNumber(id)
	if err != nil {
		return nil, fmt.Errorf("exception %q: %w", id, ErrNotFound)
	}
	v, ok, err := tx.get(key(pExc, n))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("exception %q: %w", id, ErrNotFound)
	}
	return decodeException(v)
}

// ListExceptions returns the exceptions of a sandbox ("" = all) in creation
// (numeric id) order.
func (tx *Tx) ListExceptions(sandbox string) ([]*exceptions.Exception, error) {
	var out []*exceptions.Exception
	if sandbox == "" {
		err := tx.scan([]byte(pExc), true, func(k, v []byte) error {
			e, err := decodeException(v)
			if err == nil {
				out = append(out, e)
			}
			return err
		})
		return out, err
	}
	err := tx.scan(key(pExcSb, sandbox), false, func(k, _ []byte) error {
		n, ok := tailUint64(k)
		if !ok {
			return errShortKey
		}
		e, err := tx.GetException(fmt.Sprintf("ex%d", n))
		if err == nil {
			out = append(out, e)
		}
		return err
	})
	return out, err
}

// checkRowName refuses an image or sandbox row read back whose name is not
// the one of its key, or not a valid name (names.Valid). spillway never
// writes such a row, but any host of a shared ledger can write any row,
// and the callers make paths and snapshot keys of these names: a name
// such as "../x" or "docs/session" would reach another directory or
// another sandbox's snapshots.
func checkRowName(kind, keyed, name string) error {
	if name != keyed || !names.Valid(name) {
		return errclass.Errorf(errdefs.ErrDataLoss, "store: %s row %q names %s %q, a row spillway never writes (written by another host of a shared ledger, or by hand): remove or repair it", kind, keyed, kind, name)
	}
	return nil
}

// keyName is the name part of key k (prefix ‖ name ‖ NUL).
func keyName(k []byte, prefix string) string {
	return strings.TrimSuffix(strings.TrimPrefix(string(k), prefix), "\x00")
}

// getObj decodes the object at k into v; a missing one is ErrNotFound.
func (tx *Tx) getObj(kind, name string, k []byte, v any) error {
	b, ok, err := tx.get(k)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
	}
	return decode(kind, b, v)
}

// delObj removes the object at k; a missing one is ErrNotFound.
func (tx *Tx) delObj(kind, name string, k []byte) error {
	_, ok, err := tx.get(k)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
	}
	return tx.del(k)
}
