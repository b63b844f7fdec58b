package proto

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/spillway/spillway/internal/change"
)

// Change is one entry of a guest's upper layer, relative to the layers
// below it in the guest (the sandbox's root when the VM started).
type Change struct {
	Kind change.Kind     `json:"kind"`
	Path string          `json:"path"` // clean, absolute
	Type change.FileType `json:"type"`
	Size int64           `json:"size"`
	Mode uint32          `json:"mode"` // full st_mode
	UID  uint32          `json:"uid"`
	GID  uint32          `json:"gid"`
}

// Line is c as init sends it for answer id.
func (c Change) Line(id string) string {
	return fmt.Sprintf("%s %s %s %s %d %o %d %d %s", MsgChange, id, c.Kind, c.Type, c.Size, c.Mode, c.UID, c.GID, strconv.Quote(c.Path))
}

// ParseChange reads the fields of a CHG line after its id. The line comes
// from the guest: every field is checked, the path must be clean and
// absolute, at most 4095 bytes, without NUL.
func ParseChange(fields []string, quoted string) (Change, error) {
	var c Change
	if len(fields) != 6 {
		return c, fmt.Errorf("malformed change line")
	}
	c.Kind = change.Kind(fields[0])
	switch c.Kind {
	case change.KindAdd, change.KindModify, change.KindDelete:
	default:
		return c, fmt.Errorf("unknown change kind %q", fields[0])
	}
	c.Type = change.FileType(fields[1])
	switch c.Type {
	case change.TypeFile, change.TypeDir, change.TypeSymlink, change.TypeFIFO, change.TypeSocket, change.TypeDevice:
	default:
		return c, fmt.Errorf("unknown file type %q", fields[1])
	}
	size, err1 := strconv.ParseInt(fields[2], 10, 64)
	mode, err2 := strconv.ParseUint(fields[3], 8, 32)
	uid, err3 := strconv.ParseUint(fields[4], 10, 32)
	gid, err4 := strconv.ParseUint(fields[5], 10, 32)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || size < 0 {
		return c, fmt.Errorf("malformed change numbers")
	}
	c.Size, c.Mode, c.UID, c.GID = size, uint32(mode), uint32(uid), uint32(gid)
	p, err := strconv.Unquote(quoted)
	if err != nil {
		return c, fmt.Errorf("malformed change path")
	}
	if p == "/" || !strings.HasPrefix(p, "/") || path.Clean(p) != p || len(p) > 4095 || strings.IndexByte(p, 0) >= 0 {
		return c, fmt.Errorf("unclean change path %q", p)
	}
	c.Path = p
	return c, nil
}

// SplitChangeLine splits a CHG line into its id, its numeric and word
// fields, and its quoted path (which may hold spaces).
func SplitChangeLine(line string) (id string, fields []string, quoted string, ok bool) {
	rest, found := strings.CutPrefix(line, MsgChange+" ")
	if !found {
		return "", nil, "", false
	}
	parts := strings.SplitN(rest, " ", 8)
	if len(parts) != 8 {
		return "", nil, "", false
	}
	return parts[0], parts[1:7], parts[7], true
}
