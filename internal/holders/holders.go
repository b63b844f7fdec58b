// Package holders finds what holds a mounted filesystem: the processes whose
// working directory, root directory, open files or memory maps are on it,
// and the other mounts of it, in this mount namespace or in any other.
//
// The first kind makes an unmount fail with EBUSY. The second does not, but
// keeps the filesystem alive and writable after the unmount; a mount copied
// into another namespace (unshare -m, a container) is such a mount. Both
// count: a caller that means to read the filesystem once nobody can write
// to it must see every one.
//
// Everything is read from /proc. A mount is told by its mount id; two mounts
// are of the same tree when their filesystem (major:minor) is the same and
// one's root (the path inside the filesystem it shows) is at or below the
// other's, which also covers bind mounts of a directory (the native
// snapshotter's roots). Processes that exit during the scan are skipped.
package holders

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Holder is one process, or one mount, that holds the filesystem.
type Holder struct {
	PID     int    `json:"pid"`     // 0 for a mount that no process of its own holds
	Command string `json:"command"` // the process's name (/proc/PID/comm), as it set it
	What    string `json:"what"`    // what it holds, e.g. "working directory /x"
	Path    string `json:"path"`    // the path it holds, as the process sees it
	More    int    `json:"more"`    // further paths of the same kind it holds
}

// Kinds of hold, the start of What.
const (
	Cwd   = "working directory"
	Root  = "root directory"
	File  = "open file"
	Map   = "memory map"
	Mount = "mount"
)

// String describes h in one line, e.g. `pid 42 (sleep): open file /x`.
// Path and Command are the process's own: callers that print them to a
// terminal escape them (see Describe).
func (h Holder) String() string { return h.Describe(func(s string) string { return s }) }

// Describe is String with name applied to the command and the path.
func (h Holder) Describe(name func(string) string) string {
	what := h.What
	if h.Path != "" {
		what += " " + name(h.Path)
	}
	if h.More > 0 {
		what += fmt.Sprintf(" (and %d more)", h.More)
	}
	if h.PID == 0 {
		return what
	}
	return fmt.Sprintf("pid %d (%s): %s", h.PID, name(h.Command), what)
}

// tree identifies the mounted tree: its filesystem and the path inside it.
type tree struct {
	major, minor int
	root         string
}

func (t tree) holds(m *mountinfo.Info) bool {
	if m.Major != t.major || m.Minor != t.minor {
		return false
	}
	return m.Root == t.root || strings.HasPrefix(m.Root, strings.TrimSuffix(t.root, "/")+"/")
}

// namespace is what one mount namespace has of the tree.
type namespace struct {
	ids    map[int]bool // ids of its mounts of the tree
	all    map[int]bool // ids of all its mounts
	mounts []string     // their mount points
	seen   bool         // a process of it was reported for the mounts
}

// Find returns what holds the filesystem mounted at target, other than the
// mount at target itself and the calling process. A target that is not a
// mount point has no holders.
func Find(target string) ([]Holder, error) {
	abs, err := filepath.Abs(target)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	} else if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	own, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	var top *mountinfo.Info
	for _, m := range own {
		if m.Mountpoint == abs {
			top = m // the last one listed is the one on top
		}
	}
	if top == nil {
		return nil, nil
	}
	t := tree{top.Major, top.Minor, top.Root}
	selfNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return nil, err
	}
	var out []Holder
	nss := map[string]*namespace{selfNS: nsOf(t, own)}
	for _, p := range nss[selfNS].mounts {
		// Mounts at or below target go with a recursive unmount of it.
		if p != abs && !strings.HasPrefix(p, abs+"/") {
			out = append(out, Holder{What: "another " + Mount + " at", Path: p})
		}
	}
	nss[selfNS].seen = true
	// A process in a filesystem mounted inside target makes its recursive
	// unmount fail as well: those mounts count in this namespace.
	for _, m := range own {
		if strings.HasPrefix(m.Mountpoint, abs+"/") {
			nss[selfNS].ids[m.ID] = true
		}
	}
	out = append(out, loopDevices(abs)...)
	pids, err := listPIDs()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	for _, pid := range pids {
		if pid == self {
			continue
		}
		out = append(out, scan(pid, t, nss)...)
	}
	return out, nil
}

// Loop is the kind of hold of a loop device whose backing file is in the
// filesystem.
const Loop = "loop device"

// loopDevices returns the loop devices whose backing file is at or below
// dir, as the kernel names the file (the path it was set up with).
func loopDevices(dir string) []Holder {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []Holder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		p := strings.TrimSuffix(string(b), "\n")
		if p == dir || strings.HasPrefix(p, dir+"/") {
			dev := filepath.Base(filepath.Dir(filepath.Dir(f)))
			out = append(out, Holder{What: Loop + " /dev/" + dev + " on", Path: p})
		}
	}
	return out
}

// nsOf picks the mounts of t out of a namespace's mount table.
func nsOf(t tree, infos []*mountinfo.Info) *namespace {
	ns := &namespace{ids: map[int]bool{}, all: map[int]bool{}}
	for _, m := range infos {
		ns.all[m.ID] = true
		if t.holds(m) {
			ns.ids[m.ID] = true
			ns.mounts = append(ns.mounts, m.Mountpoint)
		}
	}
	return ns
}

// scan returns what process pid holds of t.
func scan(pid int, t tree, nss map[string]*namespace) []Holder {
	dir := "/proc/" + strconv.Itoa(pid)
	nsID, err := os.Readlink(dir + "/ns/mnt")
	if err != nil {
		return nil // gone, or a kernel thread we may not look at
	}
	ns := nss[nsID]
	if ns == nil {
		f, err := os.Open(dir + "/mountinfo")
		if err != nil {
			return nil
		}
		infos, err := mountinfo.GetMountsFromReader(f, nil)
		f.Close()
		if err != nil {
			return nil
		}
		ns = nsOf(t, infos)
		nss[nsID] = ns
	}
	if len(ns.ids) == 0 && t.root != "/" {
		// Nothing of t is listed in this namespace. (An overlay root's
		// processes are still looked at: one may sit on a detached mount
		// of it, which no namespace lists; see on.)
		return nil
	}
	comm, _ := os.ReadFile(dir + "/comm")
	h := func(what, path string, more int) Holder {
		return Holder{PID: pid, Command: strings.TrimSuffix(string(comm), "\n"), What: what, Path: path, More: more}
	}
	var out []Holder
	if !ns.seen && len(ns.ids) > 0 && !lockedCopy(dir) {
		ns.seen = true
		out = append(out, h(Mount+" in another mount namespace ("+nsID+") at", ns.mounts[0], len(ns.mounts)-1))
	}
	for _, k := range []struct{ link, what string }{{"cwd", Cwd}, {"root", Root}} {
		if on(ns, t, dir+"/"+k.link) {
			p, _ := os.Readlink(dir + "/" + k.link)
			out = append(out, h(k.what, p, 0))
		}
	}
	if p, n := scanDir(ns, t, dir+"/fd"); n > 0 {
		out = append(out, h(File, p, n-1))
	}
	if p, n := scanMaps(ns, t, dir); n > 0 {
		out = append(out, h(Map, p, n-1))
	}
	return out
}

// ownUserNS is the user namespace spillway runs in.
var ownUserNS, _ = os.Readlink("/proc/self/ns/user")

// lockedCopy says whether the process at dir lives in a user namespace
// other than spillway's. Its mount namespace then holds locked copies of
// the host's mounts (unshare -Urm, a rootless container): an unprivileged
// user can make one at will, so counting such a copy as a holder would let
// any local user block every close. The copy reaches the root only through
// the state directory's 0700 mnt/, which that user cannot search, so it
// cannot write there; a working directory, root, open file or map it
// holds on the root is still counted.
func lockedCopy(dir string) bool {
	userNS, err := os.Readlink(dir + "/ns/user")
	return err == nil && ownUserNS != "" && userNS != ownUserNS
}

// on says whether the magic link p leads into a mount of the tree: one of
// the namespace's, or one no mount table lists (detached by umount -l, or
// cloned by open_tree) of the same filesystem. The latter is told by its
// device, which an overlay reports for every file in it; it counts only
// for a tree that is a whole filesystem (an overlay root), since a bind
// mount of a directory shares its device with the rest of its filesystem.
func on(ns *namespace, t tree, p string) bool {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_STATX_DONT_SYNC, unix.STATX_MNT_ID, &st); err != nil {
		return false
	}
	if st.Mask&unix.STATX_MNT_ID == 0 {
		return false
	}
	id := int(st.Mnt_id)
	if ns.ids[id] {
		return true
	}
	return !ns.all[id] && t.root == "/" && int(st.Dev_major) == t.major && int(st.Dev_minor) == t.minor
}

// scanDir returns the first of the links in dir (fd or map_files) that lead
// into the tree, and how many do.
func scanDir(ns *namespace, t tree, dir string) (string, int) {
	names, err := readNames(dir)
	if err != nil {
		return "", 0
	}
	first, n := "", 0
	for _, name := range names {
		p := dir + "/" + name
		if !on(ns, t, p) {
			continue
		}
		if n == 0 {
			first, _ = os.Readlink(p)
		}
		n++
	}
	return first, n
}

// scanMaps returns the first file mapped from the tree, and how many distinct
// files are. Only the mappings of a file whose device is the tree's (as
// /proc/PID/maps has it) are checked through their map_files link.
func scanMaps(ns *namespace, t tree, dir string) (string, int) {
	f, err := os.Open(dir + "/maps")
	if err != nil {
		return "", 0
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x", t.major, t.minor)
	seen := map[string]bool{}
	first, n := "", 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.SplitN(sc.Text(), " ", 6)
		if len(fields) < 6 || fields[4] == "0" || fields[3] != want {
			continue
		}
		file := fields[3] + " " + fields[4]
		if seen[file] {
			continue
		}
		seen[file] = true
		if !on(ns, t, dir+"/map_files/"+fields[0]) {
			continue
		}
		if n == 0 {
			first = strings.TrimLeft(fields[5], " ")
		}
		n++
	}
	return first, n
}

func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// listPIDs returns the pids in /proc, ascending.
func listPIDs() ([]int, error) {
	names, err := readNames("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids, nil
}
