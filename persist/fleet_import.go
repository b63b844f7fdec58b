package persist

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/lock"
	"github.com/spillway/spillway/internal/openfile"
	"github.com/spillway/spillway/store"
)

// FleetImportOptions are the options of `fleet import`.
type FleetImportOptions struct {
	FromRoot   string // a single-host state directory: its badger store in store/, its blobs in blobs/
	SourceHost string // the host its sessions ran on ("": its host-id file, else this host)
	Chunk      int    // writes per transaction (0: store.DefaultImportChunk)
	Log        func(format string, args ...any)
}

// FleetImport brings a single-host root into this Env's shared ledger
// (store.Import): the source is locked, its audit chains verified, its
// blobs copied into this Env's blob directory (each rehashed) and synced
// before the first ledger write, then its ledger copied in chunks and a
// bridging entry appended to the fleet chain.
//
// The source is hostile input: a local user may have prepared it, or a
// sandbox written into it. It is read through descriptors, never through
// a symlink (its own path may not pass through one either), its ledger
// from a private copy of its files (store.OpenImportSource), its blobs
// each a regular file of one link whose bytes hash to its name and match
// its records' size, all staged in the blob directory's tmp/ and moved
// into place only once every one checked out.
func (e *Env) FleetImport(ctx context.Context, o FleetImportOptions) (*store.ImportResult, error) {
	if e.store.Driver() != "postgres" {
		return nil, &InputError{Input: "store", Problem: "is the badger store in --root: fleet import copies into a shared ledger, give --store postgres://… (or SPILLWAY_STORE)"}
	}
	dir, err := filepath.Abs(o.FromRoot)
	if err != nil {
		return nil, err
	}
	if dir == e.root {
		return nil, &InputError{Input: "from-root", Problem: "is this host's own state directory: name the single-host root to import"}
	}
	if err := e.checkImportRoot(dir); err != nil {
		return nil, err
	}
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &InputError{Input: "from-root", Problem: fmt.Sprintf("%s: %v", dir, err)}
	}
	defer unix.Close(dirfd)
	storefd, err := openSubdir(dirfd, "store")
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, &InputError{Input: "from-root", Problem: fmt.Sprintf("%s holds store, a symlink: a state directory's ledger is a directory of its own; nothing imported", dir)}
	case err != nil:
		if _, serr := os.Lstat(filepath.Join(dir, hostIDFile)); serr == nil && errors.Is(err, unix.ENOENT) {
			return nil, &InputError{Input: "from-root", Problem: fmt.Sprintf("%s is the state directory of a host on a shared ledger (no ledger of its own in it): its sandboxes are in that ledger already; fleet import takes a single-host root", dir)}
		}
		return nil, &InputError{Input: "from-root", Problem: fmt.Sprintf("%s is not a spillway state directory (no store/ in it)", dir)}
	}
	defer unix.Close(storefd)
	l, err := lock.Acquire(ctx, filepath.Join(dir, "lock"), "fleet import", DefaultLockTimeout, nil)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	defer l.Release()
	if err := os.MkdirAll(e.tmpDir(), 0o700); err != nil {
		return nil, err
	}
	scratch, err := os.MkdirTemp(e.tmpDir(), "fleet-import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	src, err := store.OpenImportSource(storefd, filepath.Join(dir, "store"), scratch)
	if err != nil {
		return nil, fmt.Errorf("open the store of %s: %w", dir, err)
	}
	defer src.Close()
	host := o.SourceHost
	if host == "" {
		b, err := readSourceFile(dirfd, dir, hostIDFile, 4<<10)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		host = strings.TrimSpace(string(b))
	}
	if host == "" {
		host = e.hostID
	}
	if err := ValidateName("host", host); err != nil {
		return nil, fmt.Errorf("the source's host (%s, or --source-host): %w: nothing imported", filepath.Join(dir, hostIDFile), err)
	}
	if err := checkSourceRows(src, e.Now()); err != nil {
		return nil, err
	}
	from, err := openSourceBlobs(dirfd, dir)
	if err != nil {
		return nil, err
	}
	if from != nil {
		defer from.Close()
	}
	stage := &blobStage{b: e.blobs}
	defer stage.cleanup()
	return store.Import(ctx, src, e.store, store.ImportOptions{
		Source: dir, SourceHost: host, Host: e.hostID, Chunk: o.Chunk, Log: o.Log,
		CopyBlob: func(digest string, size int64) error { return e.copyBlobFrom(stage, from, dir, digest, size) },
		Synced: func() error {
			if err := stage.commit(); err != nil {
				return fmt.Errorf("move the source's blobs into place: %w", err)
			}
			return e.blobs.Sync()
		},
	})
}

// checkSourceRows refuses a source whose ledger holds what no spillway
// writes, and which would reach other users of the shared ledger: an
// image, sandbox or session host name spillway refuses (names become
// paths and snapshot keys on every host); an image whose snapshot key is
// not its own (img/NAME: an open of a sandbox on it would lay whatever
// that key names on the opening host, another sandbox's persisted layer
// say); an active exception of a sandbox the source does not have (it
// would apply to the ledger's sandbox of that name, someone else's; rm
// leaves a sandbox's exceptions revoked, which apply to nothing); a
// session not closed in a closed sandbox.
func checkSourceRows(src *store.Store, now time.Time) error {
	bad := func(format string, args ...any) error {
		return &store.ImportConflictError{Msg: "the source's ledger holds " + fmt.Sprintf(format, args...) + ", which spillway never writes: nothing imported"}
	}
	// The store refuses image and sandbox rows with invalid names, or
	// names other than their keys' (data loss): here, a bad source.
	sourceRows := func(err error) error {
		if errdefs.IsDataLoss(err) {
			return &store.ImportConflictError{Msg: "the source's ledger: " + err.Error() + "; nothing imported"}
		}
		return err
	}
	return src.View(func(tx *store.Tx) error {
		images, err := tx.ListImages()
		if err != nil {
			return sourceRows(err)
		}
		for _, img := range images {
			if img.Snapshot != imageKey(img.Name) {
				return bad("image %s with snapshot key %q (not %s)", img.Name, img.Snapshot, imageKey(img.Name))
			}
		}
		sbs, err := tx.ListSandboxes()
		if err != nil {
			return sourceRows(err)
		}
		have := map[string]bool{}
		for _, sb := range sbs {
			have[sb.Name] = true
			sessions, err := tx.ListSessions(sb.Name)
			if err != nil {
				return err
			}
			for _, ses := range sessions {
				if ses.Host != "" && ValidateName("host", ses.Host) != nil {
					return bad("session %d of %s on a host named %q", ses.N, sb.Name, ses.Host)
				}
				if sb.State == store.StateClosed && ses.State != store.StateClosed {
					return bad("session %d of %s %s while the sandbox is closed", ses.N, sb.Name, ses.State)
				}
			}
		}
		xs, err := tx.ListExceptions("")
		if err != nil {
			return err
		}
		for _, x := range xs {
			if !have[x.Sandbox] && x.Active(now) {
				return bad("exception %s of sandbox %q, which the source does not have (it would apply to the ledger's sandbox of that name)", x.ID, x.Sandbox)
			}
		}
		return nil
	})
}

// checkImportRoot refuses a source root whose path passes through a
// symlink (what it names could change under the import, and a link
// planted there may lead to another user's root), or that is, holds or
// lies inside this host's state directory or the blob directory.
func (e *Env) checkImportRoot(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return &InputError{Input: "from-root", Problem: fmt.Sprintf("%s: %v", dir, errors.Unwrap(err))}
	}
	if real != dir {
		return &InputError{Input: "from-root", Problem: fmt.Sprintf("%s passes through a symlink (it leads to %s): name the state directory by its own path; nothing imported", dir, real)}
	}
	for _, own := range []struct{ what, path string }{{"this host's state directory", e.root}, {"the blob directory", e.blobs.dir}} {
		for _, p := range []string{own.path, resolved(own.path)} {
			switch {
			case within(dir, p):
				return &InputError{Input: "from-root", Problem: fmt.Sprintf("%s lies inside %s %s: a single-host root to import is a directory of its own; nothing imported", dir, own.what, p)}
			case within(p, dir):
				return &InputError{Input: "from-root", Problem: fmt.Sprintf("%s holds %s %s: name the single-host root to import; nothing imported", dir, own.what, p)}
			}
		}
	}
	return nil
}

// openSubdir opens the directory name in dirfd, never through a
// symlink: a symlink there fails with ELOOP (O_DIRECTORY alone says
// ENOTDIR of it).
func openSubdir(dirfd int, name string) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOTDIR) {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			err = unix.ELOOP
		}
	}
	return fd, err
}

// readSourceFile reads a small file name of the source root dirfd (dir),
// never through a symlink and never blocking on a FIFO.
func readSourceFile(dirfd int, dir, name string, limit int64) ([]byte, error) {
	p := filepath.Join(dir, name)
	fd, st, err := openfile.RegularAt(dirfd, name)
	switch {
	case errors.Is(err, openfile.ErrSymlink), errors.Is(err, openfile.ErrNotRegular):
		return nil, fmt.Errorf("%s is not a small regular file: nothing imported", p)
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	if st.Size > limit {
		return nil, fmt.Errorf("%s is not a small regular file: nothing imported", p)
	}
	b := make([]byte, st.Size)
	n, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	return b[:n], nil
}

// openSourceBlobs opens the source's blobs/sha256 directory, never
// through a symlink; nil when the source has no blobs/ (every blob its
// records name is then missing).
func openSourceBlobs(dirfd int, dir string) (*os.File, error) {
	fd := dirfd
	for _, name := range []string{"blobs", "sha256"} {
		next, err := openSubdir(fd, name)
		if fd != dirfd {
			unix.Close(fd)
		}
		p := filepath.Join(dir, "blobs")
		if name == "sha256" {
			p = filepath.Join(p, name)
		}
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, nil
		case errors.Is(err, unix.ELOOP):
			return nil, fmt.Errorf("the source's %s is a symlink: a state directory's blobs are in a directory of its own; nothing imported", p)
		case err != nil:
			return nil, fmt.Errorf("the source's %s: %w; nothing imported", p, err)
		}
		fd = next
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, "blobs", "sha256")), nil
}

// copyBlobFrom stages a blob of the source (from: its blobs/sha256) in
// e's blob store unless it is there (checked by its hash, then its time
// renewed so that no gc takes it before the records naming it are
// written): the source's file must be a regular file of one link, of the
// size its records say, its bytes hashing to its name.
func (e *Env) copyBlobFrom(stage *blobStage, from *os.File, dir, digest string, size int64) error {
	if _, err := e.blobs.Path(digest); err != nil {
		return fmt.Errorf("the source's records name %w: nothing imported", err)
	}
	if e.blobs.has(digest, size) && e.blobs.Verify(digest) == nil {
		if err := e.blobs.reused(digest); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// another host's gc took it since: copied below
	}
	hexPart := strings.TrimPrefix(digest, "sha256:")
	p := filepath.Join(dir, "blobs", "sha256", hexPart)
	if from == nil {
		return fmt.Errorf("blob %s is missing from the source (%s): nothing imported", digest, p)
	}
	fd, st, err := openfile.RegularAt(int(from.Fd()), hexPart)
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("blob %s is missing from the source (%s): nothing imported", digest, p)
	case errors.Is(err, openfile.ErrSymlink):
		return fmt.Errorf("blob %s of the source is a symlink (%s): nothing imported", digest, p)
	case errors.Is(err, openfile.ErrNotRegular):
		return fmt.Errorf("blob %s of the source is not a regular file (%s is a directory, FIFO, device or socket): nothing imported", digest, p)
	case err != nil:
		return fmt.Errorf("blob %s of the source: open %s: %w", digest, p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	switch {
	case st.Nlink != 1:
		return fmt.Errorf("blob %s of the source has %s (%s shares its content with another name): nothing imported", digest, plural(st.Nlink, "link"), p)
	case st.Size != size:
		return fmt.Errorf("blob %s of the source is %s, its records say %d (%s): %w", digest, plural(st.Size, "byte"), size, p, ErrCorrupt)
	}
	if err := stage.stage(f, digest, size, p); err != nil {
		return fmt.Errorf("%w: nothing imported", err)
	}
	var after unix.Stat_t
	if err := unix.Fstat(fd, &after); err != nil {
		return err
	}
	if after.Size != st.Size || after.Mtim != st.Mtim || after.Ctim != st.Ctim {
		return fmt.Errorf("blob %s of the source changed while it was copied (%s): nothing imported", digest, p)
	}
	return nil
}
