package persist

import (
	"bytes"
	"io"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/persist/hostile"
)

// isNoop says whether c, a change that an exception matches, equals the
// version the session started with (SPEC, "Safety rules": content, type,
// mode after the dropped bits and owner), so that it is no change at all:
// no record, no review item, no generation, not in diff. It compares with
// the session's lower (or base) version, not with the state in effect now,
// so that a touch never undoes a rejection decided while the sandbox was
// open. Only files and symlinks can be no-ops: a new directory, a
// re-created (opaque) one and a delete are always changes. Changes no
// exception matches are discarded anyway and never read.
func isNoop(rules []*exceptions.Exception, root string, c hostile.Change, now time.Time) bool {
	b := c.Below
	if c.Kind != change.KindModify || b == nil || c.TooDeep || c.Changed ||
		b.Type != c.Type || b.UID != c.UID || b.GID != c.GID {
		return false
	}
	x := exceptions.Match(rules, c.Path, now)
	if x == nil {
		return false
	}
	switch c.Type {
	case change.TypeSymlink:
		link, err := hostile.ReadLink(b.Root, c.Path)
		return err == nil && link == c.Link
	case change.TypeFile:
		if exceptions.ModeBits(c.Mode, x.AllowExec) != exceptions.ModeBits(b.Mode, x.AllowExec) ||
			c.Size != b.Size || c.Size > x.EffectiveLimits().MaxFileSize {
			return false
		}
		return sameContent(root, c, b)
	}
	return false
}

// sameContent compares the file at c.Path in root with its version below,
// both read through the hostile-tree reader, stopping at the first
// difference. Any error reads as "different": the change then goes through
// close's usual checks.
func sameContent(root string, c hostile.Change, b *hostile.Below) bool {
	up, err := hostile.OpenFile(root, c.Path, c, c.Size)
	if err != nil {
		return false
	}
	defer up.Close()
	low, err := hostile.OpenFile(b.Root, c.Path, hostile.Change{}, b.Size)
	if err != nil {
		return false
	}
	defer low.Close()
	const chunk = 64 << 10
	ub, lb := make([]byte, chunk), make([]byte, chunk)
	for {
		n, uerr := io.ReadFull(up, ub)
		m, lerr := io.ReadFull(low, lb)
		if n != m || !bytes.Equal(ub[:n], lb[:m]) {
			return false
		}
		uend := uerr == io.EOF || uerr == io.ErrUnexpectedEOF
		lend := lerr == io.EOF || lerr == io.ErrUnexpectedEOF
		switch {
		case uend && lend:
			return up.Verify() == nil
		case uerr != nil || lerr != nil:
			return false
		}
	}
}
