package vm

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/sparse"
	"github.com/spillway/spillway/vm/proto"
)

// StreamLimits bound what a guest's changes stream may make the host write.
type StreamLimits struct {
	MaxFile    int64 // bytes of one file
	MaxTotal   int64 // bytes of the whole stream
	MaxEntries int
}

// DefaultStreamLimits are generous: close applies its own quotas after.
var DefaultStreamLimits = StreamLimits{MaxFile: 16 << 30, MaxTotal: 64 << 30, MaxEntries: 1 << 20}

// Refusal is a stream entry that was not written, and why.
type Refusal struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
	Type   string `json:"type"` // the entry's type: file, dir, symlink, fifo, device, link (hard link), other
	Size   int64  `json:"size"`
	Kept   bool   `json:"kept"` // its content was written to the keep directory
}

// StreamResult says what Materialise did.
type StreamResult struct {
	Applied  int
	Refused  []Refusal
	Bytes    int64  // bytes of the stream read
	Complete bool   // the tar's end was reached cleanly
	Err      string // why the stream stopped early
}

// Materialise applies a guest's changes stream (an OCI layer tar: ".wh.NAME"
// whiteouts, "DIR/.wh..wh..opq" opaque markers) to upper, an overlay upper
// directory, as the kernel's overlay would have written it: whiteouts as
// 0:0 character devices, opaque directories with trusted.overlay.opaque=y.
//
// The stream is hostile. Each entry is checked on its own and refused when
// its name is not a clean relative path (absolute, "..", empty parts), when
// it is a device, a hard link, setuid or setgid, too large, or names a
// place whose parent is not a real directory beneath upper (parents are
// opened with openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV,
// never following a link). A truncated stream stops at the entry it cut;
// the file it cut is removed, what came before stays.
func Materialise(r io.Reader, upper string, lim StreamLimits) (*StreamResult, error) {
	return MaterialiseKeeping(r, upper, lim, "")
}

// MaterialiseKeeping is Materialise that also writes the content of each
// refused regular file with a clean name (setuid, a bad parent…, not one
// over the size limit) to keep, a new private directory, at the same path,
// 0600 and owned by the caller, for the recovery area.
func MaterialiseKeeping(r io.Reader, upper string, lim StreamLimits, keep string) (*StreamResult, error) {
	root, err := unix.Open(upper, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vm: open upper layer: %w", err)
	}
	defer unix.Close(root)
	cr := &limitReader{r: r, left: lim.MaxTotal}
	m := &materialiser{root: root, lim: lim, res: &StreamResult{}, keep: keep}
	tr := tar.NewReader(cr)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			m.res.Complete = true
			break
		}
		if err != nil {
			m.res.Err = streamErr(err)
			break
		}
		if n >= lim.MaxEntries {
			m.res.Err = "too many entries"
			break
		}
		if err := m.entry(hdr, tr); err != nil {
			m.res.Err = err.Error()
			break
		}
	}
	// The end marker may be followed by padding: count it.
	io.Copy(io.Discard, cr)
	m.res.Bytes = cr.n
	return m.res, nil
}

func streamErr(err error) string {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "truncated stream"
	}
	if errors.Is(err, errStreamTooLarge) {
		return "stream over its size limit"
	}
	return err.Error()
}

type materialiser struct {
	root int
	lim  StreamLimits
	res  *StreamResult
	keep string
	hdr  *tar.Header // the entry being applied
	body io.Reader   // its content, until read
}

func (m *materialiser) refuse(name, reason string) {
	x := Refusal{Name: name, Reason: reason, Type: entryType(m.hdr.Typeflag)}
	if m.hdr.Typeflag == tar.TypeReg {
		x.Size = m.hdr.Size
		x.Kept = m.keepContent(name, reason)
	}
	m.res.Refused = append(m.res.Refused, x)
}

// keepContent writes the refused file's content to the keep directory.
func (m *materialiser) keepContent(name, reason string) bool {
	if m.keep == "" || m.body == nil || reason == "too large" || reason == "truncated" || checkName(name) != "" || isWhiteout(m.hdr) {
		return false
	}
	body := m.body
	m.body = nil
	p := filepath.Join(m.keep, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return false
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return false
	}
	n, err := io.CopyN(f, body, m.hdr.Size)
	if err == nil {
		err = keepAttrs(f, m.hdr)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || n != m.hdr.Size {
		os.Remove(p)
		return false
	}
	return true
}

// keepAttrs gives a kept file the guest's owner, permission bits (never
// setuid, setgid or sticky) and modification time, as a container's
// session keeps them in its tree: a restore takes them from there.
func keepAttrs(f *os.File, hdr *tar.Header) error {
	if hdr.Uid >= 0 && hdr.Gid >= 0 && hdr.Uid <= math.MaxInt32 && hdr.Gid <= math.MaxInt32 {
		f.Chown(hdr.Uid, hdr.Gid) // not root: the content is kept all the same, as ours
	}
	if err := f.Chmod(os.FileMode(hdr.Mode & 0o777)); err != nil {
		return err
	}
	mt := unix.NsecToTimespec(hdr.ModTime.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, f.Name(), []unix.Timespec{mt, mt}, unix.AT_SYMLINK_NOFOLLOW)
}

// FileType is the recovery area's type of a refused entry (a hard link is
// a file whose content the stream does not hold).
func (r Refusal) FileType() change.FileType {
	switch r.Type {
	case "dir":
		return change.TypeDir
	case "symlink":
		return change.TypeSymlink
	case "fifo":
		return change.TypeFIFO
	case "device", "other":
		return change.TypeDevice
	}
	return change.TypeFile
}

// RefusedFile is the file of a run directory that lists, as JSON, what a
// rescue's stream had refused (its content is in the directory's
// "refused" tree), for close to put in the recovery area.
const RefusedFile = "refused.json"

// entryType names a tar entry's type as a refusal reports it.
func entryType(flag byte) string {
	switch flag {
	case tar.TypeReg:
		return "file"
	case tar.TypeDir:
		return "dir"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeFifo:
		return "fifo"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeLink:
		return "link"
	}
	return "other"
}

// entry applies one entry; an error stops the stream (truncation), a
// refusal does not.
func (m *materialiser) entry(hdr *tar.Header, r io.Reader) error {
	m.hdr, m.body = hdr, r
	name := strings.TrimSuffix(hdr.Name, "/")
	checked := name
	if isWhiteout(hdr) {
		// The name deleted is what must fit: ".wh." and a 252–255 byte
		// name is longer than a file name may be, and is still a deletion.
		// The directory part is kept as it came (not cleaned: "a/../.wh.c"
		// stays unclean and refused).
		dir, base := path.Split(name)
		checked = dir + strings.TrimPrefix(base, ".wh.")
	}
	if why := checkName(checked); why != "" {
		m.refuse(hdr.Name, why)
		return nil
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if isWhiteout(hdr) {
		return m.whiteout(hdr, dir, base)
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > math.MaxInt32 || hdr.Gid > math.MaxInt32 {
		m.refuse(name, "owner out of range")
		return nil
	}
	if hdr.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 && hdr.Typeflag != tar.TypeDir {
		m.refuse(name, "setuid or setgid")
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeFifo:
	case tar.TypeChar, tar.TypeBlock:
		m.refuse(name, "device")
		return nil
	case tar.TypeLink:
		m.refuse(name, "hard link")
		return nil
	default:
		m.refuse(name, fmt.Sprintf("entry type %q", hdr.Typeflag))
		return nil
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > m.lim.MaxFile {
		m.refuse(name, "too large")
		return nil
	}
	pfd, err := m.openParent(dir)
	if err != nil {
		m.refuse(name, err.Error())
		return nil
	}
	defer unix.Close(pfd)
	perm := uint32(hdr.Mode) & 0o777
	switch hdr.Typeflag {
	case tar.TypeDir:
		return m.dir(pfd, name, base, hdr, perm|uint32(hdr.Mode)&unix.S_ISVTX)
	case tar.TypeReg:
		return m.file(pfd, name, base, hdr, perm, r)
	case tar.TypeSymlink:
		if hdr.Linkname == "" || len(hdr.Linkname) > 4095 || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			m.refuse(name, "bad link target")
			return nil
		}
		if err := removeAllAt(pfd, base); err != nil {
			m.refuse(name, err.Error())
			return nil
		}
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			m.refuse(name, err.Error())
			return nil
		}
	case tar.TypeFifo:
		if err := removeAllAt(pfd, base); err != nil {
			m.refuse(name, err.Error())
			return nil
		}
		if err := unix.Mknodat(pfd, base, unix.S_IFIFO|perm, 0); err != nil {
			m.refuse(name, err.Error())
			return nil
		}
	}
	unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	m.res.Applied++
	return nil
}

// checkName returns why a stream name is refused, or "".
func checkName(name string) string {
	switch {
	case name == "" || name == ".":
		return "empty name"
	case strings.HasPrefix(name, "/"):
		return "absolute name"
	case strings.IndexByte(name, 0) >= 0:
		return "NUL in name"
	case len(name) > 4095:
		return "name too long"
	case path.Clean(name) != name:
		return "unclean name (.., . or //)"
	case name == ".." || strings.HasPrefix(name, "../"):
		return "name outside the root"
	case strings.Count(name, "/") > 512:
		return "too deep"
	}
	for _, c := range strings.Split(name, "/") {
		if len(c) > 255 {
			return "name component too long"
		}
	}
	return ""
}

// isWhiteout says whether hdr is one of the guest's deletion or opaque
// markers: a ".wh." name and the PAX record proto.WhiteoutPAX. A file the
// guest's user named ".wh.NAME" has no such record: it is a file like any
// other, never a deletion of NAME.
func isWhiteout(hdr *tar.Header) bool {
	return strings.HasPrefix(path.Base(strings.TrimSuffix(hdr.Name, "/")), ".wh.") && hdr.PAXRecords[proto.WhiteoutPAX] == "1"
}

// whiteout applies ".wh.NAME" (NAME deleted) or ".wh..wh..opq" (DIR opaque).
func (m *materialiser) whiteout(hdr *tar.Header, dir, base string) error {
	name := path.Join(dir, base)
	if hdr.Typeflag != tar.TypeReg || hdr.Size != 0 {
		m.refuse(name, "whiteout with content")
		return nil
	}
	if base == ".wh..wh..opq" {
		if dir == "" {
			m.refuse(name, "opaque root")
			return nil
		}
		fd, err := openBeneath(m.root, dir, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			m.refuse(name, "opaque marker: "+err.Error())
			return nil
		}
		defer unix.Close(fd)
		if err := clearDir(fd); err != nil {
			m.refuse(name, err.Error())
			return nil
		}
		if err := unix.Fsetxattr(fd, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			m.refuse(name, "opaque marker: "+err.Error())
			return nil
		}
		m.res.Applied++
		return nil
	}
	target := strings.TrimPrefix(base, ".wh.")
	if strings.HasPrefix(target, ".wh.") || target == "" || target == "." || target == ".." {
		m.refuse(name, "forged whiteout")
		return nil
	}
	pfd, err := m.openParent(dir)
	if err != nil {
		m.refuse(name, err.Error())
		return nil
	}
	defer unix.Close(pfd)
	if err := removeAllAt(pfd, target); err != nil {
		m.refuse(name, err.Error())
		return nil
	}
	if err := unix.Mknodat(pfd, target, unix.S_IFCHR, 0); err != nil {
		m.refuse(name, "whiteout: "+err.Error())
		return nil
	}
	m.res.Applied++
	return nil
}

func (m *materialiser) openParent(dir string) (int, error) {
	if dir == "" {
		return unix.Openat(m.root, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	fd, err := openBeneath(m.root, dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, fmt.Errorf("parent %s: %w", dir, err)
	}
	return fd, nil
}

// openBeneath opens rel under root without following any link or leaving
// root's mount.
func openBeneath(root int, rel string, flags int) (int, error) {
	return unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
}

func (m *materialiser) dir(pfd int, name, base string, hdr *tar.Header, mode uint32) error {
	var st unix.Stat_t
	err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := removeAllAt(pfd, base); err != nil {
			m.refuse(name, err.Error())
			return nil
		}
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			m.refuse(name, err.Error())
			return nil
		}
	}
	fd, err := openBeneath(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		m.refuse(name, err.Error())
		return nil
	}
	defer unix.Close(fd)
	unix.Fchown(fd, hdr.Uid, hdr.Gid)
	unix.Fchmod(fd, mode)
	m.res.Applied++
	return nil
}

func (m *materialiser) file(pfd int, name, base string, hdr *tar.Header, perm uint32, r io.Reader) error {
	if err := removeAllAt(pfd, base); err != nil {
		m.refuse(name, err.Error())
		return nil
	}
	fd, err := unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		m.refuse(name, err.Error())
		return nil
	}
	sw := sparse.NewWriter(sparse.FD(fd)) // the guest's holes came as zeros: holes again
	n, err := io.CopyN(sw, r, hdr.Size)
	if err == nil {
		err = sw.Finish()
	}
	if err == nil || n == hdr.Size {
		unix.Fchown(fd, hdr.Uid, hdr.Gid)
		err = unix.Fchmod(fd, perm)
		ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
		unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	unix.Close(fd)
	if n != hdr.Size {
		unix.Unlinkat(pfd, base, 0)
		m.refuse(name, "truncated")
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%s", streamErr(err))
	}
	m.res.Applied++
	return nil
}

// removeAllAt removes name in the directory dirfd, recursively, never
// following links. A missing name is not an error.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	err = clearDir(fd)
	unix.Close(fd)
	if err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// clearDir removes every entry of the open directory fd.
func clearDir(fd int) error {
	for {
		names, err := readNames(fd)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			return nil
		}
		for _, n := range names {
			if err := removeAllAt(fd, n); err != nil {
				return err
			}
		}
	}
}

func readNames(fd int) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dup)
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.ReadDirent(dup, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

var errStreamTooLarge = errors.New("stream too large")

// limitReader counts bytes and fails past a limit.
type limitReader struct {
	r    io.Reader
	n    int64
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errStreamTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	l.left -= int64(n)
	return n, err
}
