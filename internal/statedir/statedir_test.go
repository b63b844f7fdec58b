package statedir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// other is a uid that is neither root nor the caller (nobody).
const other = 65534

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests chown files to another user and need root (CI runs them as root)")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(p, 0o700))
	must(t, unix.Chmod(p, uint32(mode))) // os.Chmod would drop 0o1000
}

// wantRefusal checks that err is a refusal of path (relative to base) with
// a reason containing reason; reason "" wants no error.
func wantRefusal(t *testing.T, err error, base, path, reason string) {
	t.Helper()
	if reason == "" {
		if err != nil {
			t.Fatalf("unexpected refusal: %v", err)
		}
		return
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a refusal of %s that %s", err, path, reason)
	}
	if want := filepath.Join(base, path); se.Path != want || !strings.Contains(se.Reason, reason) {
		t.Fatalf("refused %s %q, want %s %q", se.Path, se.Reason, want, reason)
	}
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("%v is not a failed precondition", err)
	}
	if strings.HasSuffix(err.Error(), ".") || !strings.Contains(err.Error(), se.Path) {
		t.Fatalf("message %q must name the path and end without a period", err)
	}
}

func TestPrepare(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name   string
		uid    uint32 // 0: root
		setup  func(t *testing.T, base string)
		root   string // state directory below base
		path   string // refused path below base ("" with reason "")
		reason string
	}{
		{name: "missing directories are created", root: "a/b/state"},
		{name: "an existing 0755 state directory", root: "state",
			setup: func(t *testing.T, b string) { mkdir(t, filepath.Join(b, "state"), 0o755) }},
		{name: "an ancestor of another user", root: "mallory/state", path: "mallory",
			reason: "is owned by uid 65534, not by you (uid 0) or root",
			setup:  func(t *testing.T, b string) { mkdir(t, filepath.Join(b, "mallory"), 0o755); chown(t, b, "mallory") }},
		{name: "an ancestor writable by others", root: "shared/state", path: "shared",
			reason: "is writable by others (mode 0757)",
			setup:  func(t *testing.T, b string) { mkdir(t, filepath.Join(b, "shared"), 0o757) }},
		{name: "an ancestor writable by group", root: "shared/state", path: "shared",
			reason: "is writable by group (mode 0775)",
			setup:  func(t *testing.T, b string) { mkdir(t, filepath.Join(b, "shared"), 0o775) }},
		{name: "a sticky ancestor such as /tmp", root: "tmp/x",
			setup: func(t *testing.T, b string) { mkdir(t, filepath.Join(b, "tmp"), 0o1777) }},
		{name: "a state directory of another user in a sticky directory", root: "tmp/x", path: "tmp/x",
			reason: "is owned by uid 65534, not by you (uid 0)",
			setup: func(t *testing.T, b string) {
				mkdir(t, filepath.Join(b, "tmp"), 0o1777)
				mkdir(t, filepath.Join(b, "tmp/x"), 0o700)
				chown(t, b, "tmp/x")
			}},
		{name: "a state directory writable by group and others", root: "state", path: "state",
			reason: "is writable by group and others (mode 0777)",
			setup:  func(t *testing.T, b string) { mkdir(t, filepath.Join(b, "state"), 0o777) }},
		{name: "a state directory that is a file", root: "state", path: "state", reason: "is not a directory",
			setup: func(t *testing.T, b string) { must(t, os.WriteFile(filepath.Join(b, "state"), nil, 0o600)) }},
		{name: "a symlink of another user in a sticky directory", root: "tmp/link/state", path: "tmp/link",
			reason: "is owned by uid 65534",
			setup: func(t *testing.T, b string) {
				mkdir(t, filepath.Join(b, "tmp"), 0o1777)
				mkdir(t, filepath.Join(b, "real"), 0o700)
				must(t, os.Symlink(filepath.Join(b, "real"), filepath.Join(b, "tmp/link")))
				chown(t, b, "tmp/link")
			}},
		{name: "a symlink of ours into another user's directory", root: "link", path: "mallory",
			reason: "is owned by uid 65534",
			setup: func(t *testing.T, b string) {
				mkdir(t, filepath.Join(b, "mallory/state"), 0o700)
				chown(t, b, "mallory")
				must(t, os.Symlink("mallory/state", filepath.Join(b, "link")))
			}},
		{name: "a relative symlink with ..", root: "d/link/state",
			setup: func(t *testing.T, b string) {
				mkdir(t, filepath.Join(b, "d"), 0o755)
				mkdir(t, filepath.Join(b, "real"), 0o755)
				must(t, os.Symlink("../real", filepath.Join(b, "d/link")))
			}},
		{name: "a symlink loop", root: "l1/state", path: "l1", reason: "leads through more than 40 symlinks",
			setup: func(t *testing.T, b string) {
				must(t, os.Symlink("l2", filepath.Join(b, "l1")))
				must(t, os.Symlink("l1", filepath.Join(b, "l2")))
			}},
		{name: "another caller: root's ancestors are fine, its own directory too", uid: 1000, root: "state",
			setup: func(t *testing.T, b string) {
				mkdir(t, filepath.Join(b, "state"), 0o700)
				must(t, os.Chown(filepath.Join(b, "state"), 1000, 1000))
			}},
		{name: "another caller: a state directory of root's is not", uid: 1000, root: "state", path: "state",
			reason: "is owned by uid 0, not by you (uid 1000)",
			setup:  func(t *testing.T, b string) { mkdir(t, filepath.Join(b, "state"), 0o700) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, base)
			}
			root := filepath.Join(base, tc.root)
			var err error
			if tc.uid == 0 {
				err = Prepare(root)
			} else {
				err = checker{root: root, uid: tc.uid}.walk(root)
			}
			wantRefusal(t, err, base, tc.path, tc.reason)
			if tc.reason == "" {
				fi, err := os.Stat(root)
				if err != nil || !fi.IsDir() {
					t.Fatalf("state directory not created: %v", err)
				}
			}
		})
	}
}

func TestPrepareCreatesNothingPastARefusal(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	mkdir(t, filepath.Join(base, "mallory"), 0o755)
	chown(t, base, "mallory")
	if err := Prepare(filepath.Join(base, "mallory/a/state")); err == nil {
		t.Fatal("accepted a state directory under another user's directory")
	}
	if _, err := os.Lstat(filepath.Join(base, "mallory/a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("created a directory inside another user's directory: %v", err)
	}
}

func TestPrepareCreates0700(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(t.TempDir(), "a", "state")
	must(t, Prepare(root))
	for _, p := range []string{root, filepath.Dir(root)} {
		fi, err := os.Lstat(p)
		must(t, err)
		if fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s has mode %v, want 0700", p, fi.Mode().Perm())
		}
	}
}

func TestPrepareRelative(t *testing.T) {
	if err := Prepare("state"); err == nil {
		t.Fatal("accepted a relative path")
	}
}

// chown gives path (below base) to the other user, without following a
// symlink.
func chown(t *testing.T, base, path string) {
	t.Helper()
	must(t, os.Lchown(filepath.Join(base, path), other, other))
}
