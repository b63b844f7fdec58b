package persist

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// ManifestEntry is one line of a session's manifest: a change that close
// refused or discarded.
type ManifestEntry struct {
	Path      string          `json:"path"`
	PathBytes []byte          `json:"path_bytes,omitempty"` // the exact bytes when path is not valid UTF-8
	Kind      change.Kind     `json:"kind"`
	Type      change.FileType `json:"type"`
	Size      int64           `json:"size"`
	Verdict   change.Verdict  `json:"verdict"` // change.VerdictRefuse or change.VerdictDiscard
	Reason    string          `json:"reason,omitempty"`
	Exception string          `json:"exception,omitempty"`
}

// ManifestPath is the manifest of a session:
// <root>/recovery/<sandbox>/<session>/manifest.jsonl.
func (e *Env) ManifestPath(sandbox string, session uint64) string {
	return filepath.Join(e.root, "recovery", sandbox, strconv.FormatUint(session, 10), "manifest.jsonl")
}

// manifest streams entries to a manifest file. A write error (a full disk)
// is kept, further entries are dropped, and close goes on: the manifest
// is then incomplete.
type manifest struct {
	f   *os.File
	w   *bufio.Writer
	buf []byte
	err error
}

// createManifest creates the manifest of a session: its directories 0700
// and the file 0600, each created relative to its parent's descriptor
// without following a symlink; the file of an interrupted try is replaced.
func (e *Env) createManifest(sandbox string, session uint64) (*manifest, error) {
	fd, err := unix.Open(e.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	for _, part := range []string{"recovery", sandbox, strconv.FormatUint(session, 10)} {
		if err := unix.Mkdirat(fd, part, 0o700); err != nil && err != unix.EEXIST {
			unix.Close(fd)
			return nil, fmt.Errorf("create recovery area: %w", err)
		}
		cfd, err := unix.Openat(fd, part, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("open recovery area: %s: %w", part, err)
		}
		fd = cfd
	}
	defer unix.Close(fd)
	const name = "manifest.jsonl"
	if err := unix.Unlinkat(fd, name, 0); err != nil && err != unix.ENOENT {
		return nil, fmt.Errorf("remove old manifest: %w", err)
	}
	mfd, err := unix.Openat(fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create manifest: %w", err)
	}
	return newManifest(os.NewFile(uintptr(mfd), e.ManifestPath(sandbox, session))), nil
}

// createTempManifest makes an unnamed manifest for a dry run: it is gone
// once closed.
func (e *Env) createTempManifest() (*manifest, error) {
	dir := e.tmpDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create dry-run manifest: %w", err)
	}
	return newManifest(os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed dry-run manifest)"))), nil
}

func newManifest(f *os.File) *manifest {
	return &manifest{f: f, w: bufio.NewWriterSize(reserveWriter{f}, 64<<10)}
}

// reserveWriter writes to f while the filesystem keeps store.Reserve free
// beside the bytes written, so a long manifest never takes the room the
// store needs to commit the close.
type reserveWriter struct{ f *os.File }

func (w reserveWriter) Write(p []byte) (int, error) {
	if free, err := store.FreeBytes(filepath.Dir(w.f.Name())); err == nil && free-int64(len(p)) < store.Reserve {
		return 0, fmt.Errorf("manifest: %w (the store's reserve)", unix.ENOSPC)
	}
	return w.f.Write(p)
}

// add writes one entry (nothing once a write has failed).
func (m *manifest) add(x ManifestEntry) {
	if m.err != nil {
		return
	}
	m.buf = x.appendJSON(m.buf[:0])
	m.buf = append(m.buf, '\n')
	_, m.err = m.w.Write(m.buf)
}

// appendJSON appends x as encoding/json would marshal it (one line, no
// HTML escaping), without reflection: a close may write millions.
func (x *ManifestEntry) appendJSON(b []byte) []byte {
	b = appendPathJSON(b, x.Path, x.PathBytes)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, string(x.Kind))
	b = append(b, `,"type":`...)
	b = appendJSONString(b, string(x.Type))
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, x.Size, 10)
	b = append(b, `,"verdict":`...)
	b = appendJSONString(b, string(x.Verdict))
	if x.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, x.Reason)
	}
	if x.Exception != "" {
		b = append(b, `,"exception":`...)
		b = appendJSONString(b, x.Exception)
	}
	return append(b, '}')
}

// appendPathJSON opens a JSON object with its "path" and, when not nil,
// its "path_bytes" (base64), as encoding/json writes them.
func appendPathJSON(b []byte, path string, exact []byte) []byte {
	b = append(b, `{"path":`...)
	b = appendJSONString(b, path)
	if exact != nil {
		b = append(b, `,"path_bytes":"`...)
		b = base64.StdEncoding.AppendEncode(b, exact)
		b = append(b, '"')
	}
	return b
}

// appendJSONString appends s as a JSON string the way encoding/json
// writes it without HTML escaping: invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// finish flushes and syncs the manifest; the error is also kept in m.err.
// A manifest whose writes failed (the filesystem full, or the store's
// reserve reached between two buffers) is cut back to its last whole
// line: what it lists is then true, and an entry appended later
// (keepLostCommit) starts a line of its own.
func (m *manifest) finish() error {
	if m.err == nil {
		m.err = m.w.Flush()
	}
	if m.err == nil {
		m.err = m.f.Sync()
	}
	if m.err != nil {
		cutToLastLine(m.f)
	}
	return m.err
}

// mendManifest cuts the manifest at p back to its last whole line, when a
// write that failed left half of one at its end (a manifest written
// before finish did so); none at p is fine.
func mendManifest(p string) error {
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	return cutToLastLine(f)
}

// cutToLastLine truncates f after its last newline (to nothing when it
// has none) unless it ends with one.
func cutToLastLine(f *os.File) error {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return err
	}
	end := fi.Size()
	buf := make([]byte, 64<<10)
	for off := end; off > 0; {
		n := min(off, int64(len(buf)))
		off -= n
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			if off+int64(i)+1 == end {
				return nil
			}
			return f.Truncate(off + int64(i) + 1)
		}
	}
	return f.Truncate(0)
}

// eachManifestEntry calls fn for every entry of the manifest read from r.
func eachManifestEntry(r io.Reader, fn func(ManifestEntry) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var x ManifestEntry
		if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		if x.PathBytes != nil {
			x.Path = string(x.PathBytes)
		}
		if err := fn(x); err != nil {
			return err
		}
	}
	return sc.Err()
}

// manifestSessions is how many of a sandbox's newest sessions the
// recovery area keeps by default (--keep-sessions).
const manifestSessions = 7

// pruneManifests forgets the recovery directories of sandbox's sessions
// below from (^uint64(0): all of them), and the sandbox's directory when
// nothing is left. Each goes by a rename into trash.
func (e *Env) pruneManifests(sandbox string, from uint64) error {
	sessions, err := e.recoverySessions(sandbox)
	if err != nil {
		return fmt.Errorf("recovery area of %s: %w", sandbox, err)
	}
	for _, rs := range sessions {
		if rs.n < from {
			if err := e.removeSessionDir(sandbox, rs.n); err != nil {
				return err
			}
		}
	}
	os.Remove(filepath.Join(e.recoveryDir(), sandbox))
	if from == ^uint64(0) {
		return os.RemoveAll(e.commitNotesDir(sandbox))
	}
	return nil
}
