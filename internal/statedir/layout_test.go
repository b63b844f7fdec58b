package statedir

import (
	"os"
	"path/filepath"
	"testing"
)

// stateTree builds a state directory holding one of everything that the
// layout names, as spillway leaves it.
func stateTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	for _, d := range []string{"store", "snapshots/overlayfs/snapshots/1/fs", "snapshots/native/import",
		"blobs/sha256", "blobs/tmp", "mnt/docs", "tmp", "trash", "recovery/docs/1", "run/runc/spillway-docs-1", "run/sbx/docs/spillway-docs-1"} {
		mkdir(t, filepath.Join(root, d), 0o700)
	}
	for _, f := range []string{"lock", "store/MANIFEST", "store/LOCK", "snapshots/overlayfs/metadata.db",
		"blobs/sha256/" + hex64, "run/sbx/docs/spillway-docs-1.json"} {
		must(t, os.WriteFile(filepath.Join(root, f), []byte("x"), 0o600))
	}
	// An image tree keeps its own owners and modes.
	must(t, os.Chmod(filepath.Join(root, "snapshots/overlayfs/snapshots/1/fs"), 0o755))
	return root
}

const hex64 = "0000000000000000000000000000000000000000000000000000000000000000"

func TestCheck(t *testing.T) {
	requireRoot(t)
	victim := filepath.Join(t.TempDir(), "victim")
	must(t, os.MkdirAll(victim, 0o755))
	// plant replaces path with a symlink to victim.
	plant := func(path string) func(t *testing.T, root string) {
		return func(t *testing.T, root string) {
			p := filepath.Join(root, path)
			must(t, os.RemoveAll(p))
			must(t, os.Symlink(victim, p))
		}
	}
	tests := []struct {
		name   string
		mutate func(t *testing.T, root string)
		path   string // refused path below root ("" with reason "")
		reason string
	}{
		{name: "as spillway leaves it"},
		{name: "lock is a symlink", mutate: plant("lock"), path: "lock", reason: "is a symlink"},
		{name: "store is a symlink", mutate: plant("store"), path: "store", reason: "is a symlink"},
		{name: "a badger file is a symlink", mutate: plant("store/LOCK"), path: "store/LOCK", reason: "is a symlink"},
		{name: "snapshotter root is a symlink", mutate: plant("snapshots/overlayfs"), path: "snapshots/overlayfs", reason: "is a symlink"},
		{name: "snapshots is a symlink", mutate: plant("snapshots"), path: "snapshots", reason: "is a symlink"},
		{name: "metadata.db is a symlink", mutate: plant("snapshots/overlayfs/metadata.db"), path: "snapshots/overlayfs/metadata.db", reason: "is a symlink"},
		{name: "a snapshot is a symlink", mutate: plant("snapshots/overlayfs/snapshots/1"), path: "snapshots/overlayfs/snapshots/1", reason: "is a symlink"},
		{name: "an import mount point is a symlink", mutate: plant("snapshots/native/import/x"), path: "snapshots/native/import/x", reason: "is a symlink"},
		{name: "blobs is a symlink", mutate: plant("blobs"), path: "blobs", reason: "is a symlink"},
		{name: "blobs/sha256 is a symlink", mutate: plant("blobs/sha256"), path: "blobs/sha256", reason: "is a symlink"},
		{name: "blobs/tmp is a symlink", mutate: plant("blobs/tmp"), path: "blobs/tmp", reason: "is a symlink"},
		{name: "mnt is a symlink", mutate: plant("mnt"), path: "mnt", reason: "is a symlink"},
		{name: "a mount point is a symlink", mutate: plant("mnt/docs"), path: "mnt/docs", reason: "is a symlink"},
		{name: "tmp is a symlink", mutate: plant("tmp"), path: "tmp", reason: "is a symlink"},
		{name: "trash is a symlink", mutate: plant("trash"), path: "trash", reason: "is a symlink"},
		{name: "recovery is a symlink", mutate: plant("recovery"), path: "recovery", reason: "is a symlink"},
		{name: "a sandbox's recovery area is a symlink", mutate: plant("recovery/docs"), path: "recovery/docs", reason: "is a symlink"},
		{name: "a session's recovery directory is a symlink", mutate: plant("recovery/docs/1"), path: "recovery/docs/1", reason: "is a symlink"},
		{name: "run is a symlink", mutate: plant("run"), path: "run", reason: "is a symlink"},
		{name: "a run entry is a symlink", mutate: plant("run/sbx/docs/spillway-docs-1.json"), path: "run/sbx/docs/spillway-docs-1.json", reason: "is a symlink"},
		{name: "a mount point is a file", path: "mnt/docs", reason: "is not a directory",
			mutate: func(t *testing.T, root string) {
				must(t, os.Remove(filepath.Join(root, "mnt/docs")))
				must(t, os.WriteFile(filepath.Join(root, "mnt/docs"), nil, 0o600))
			}},
		{name: "lock has a second link", path: "lock", reason: "has 2 hard links",
			mutate: func(t *testing.T, root string) {
				must(t, os.Link(filepath.Join(root, "lock"), filepath.Join(root, "lock2")))
			}},
		{name: "lock of another user", path: "lock", reason: "is owned by uid 65534, not by you (uid 0)",
			mutate: func(t *testing.T, root string) { chown(t, root, "lock") }},
		{name: "store is a file", path: "store", reason: "is not a directory",
			mutate: func(t *testing.T, root string) {
				must(t, os.RemoveAll(filepath.Join(root, "store")))
				must(t, os.WriteFile(filepath.Join(root, "store"), nil, 0o600))
			}},
		{name: "a badger file writable by others", path: "store/MANIFEST", reason: "is writable by others (mode 0602)",
			mutate: func(t *testing.T, root string) { must(t, os.Chmod(filepath.Join(root, "store/MANIFEST"), 0o602)) }},
		{name: "mnt of another user", path: "mnt", reason: "is owned by uid 65534",
			mutate: func(t *testing.T, root string) { chown(t, root, "mnt") }},
		{name: "mnt writable by all", path: "mnt", reason: "is writable by group and others (mode 0777)",
			mutate: func(t *testing.T, root string) { must(t, os.Chmod(filepath.Join(root, "mnt"), 0o777)) }},
		{name: "snapshotter root writable by group", path: "snapshots/overlayfs", reason: "is writable by group (mode 0770)",
			mutate: func(t *testing.T, root string) { must(t, os.Chmod(filepath.Join(root, "snapshots/overlayfs"), 0o770)) }},
		{name: "trash of another user", path: "trash", reason: "is owned by uid 65534",
			mutate: func(t *testing.T, root string) { chown(t, root, "trash") }},
		{name: "an image tree of another user is fine",
			mutate: func(t *testing.T, root string) { chown(t, root, "snapshots/overlayfs/snapshots/1/fs") }},
		{name: "a mounted root of another user is fine",
			mutate: func(t *testing.T, root string) { chown(t, root, "mnt/docs") }},
		{name: "entries spillway does not know are left alone",
			mutate: func(t *testing.T, root string) { must(t, os.Symlink(victim, filepath.Join(root, "other"))) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := stateTree(t)
			if tc.mutate != nil {
				tc.mutate(t, root)
			}
			wantRefusal(t, Check(root), root, tc.path, tc.reason)
		})
	}
}

func TestCheckTightensDirectoriesTo0700(t *testing.T) {
	requireRoot(t)
	root := stateTree(t)
	for _, d := range []string{"mnt", "blobs", "snapshots/overlayfs/snapshots"} {
		must(t, os.Chmod(filepath.Join(root, d), 0o755))
	}
	must(t, Check(root))
	for _, d := range []string{"mnt", "blobs", "snapshots/overlayfs/snapshots"} {
		fi, err := os.Lstat(filepath.Join(root, d))
		must(t, err)
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, fi.Mode().Perm())
		}
	}
	// The image tree inside keeps its mode.
	fi, err := os.Lstat(filepath.Join(root, "snapshots/overlayfs/snapshots/1/fs"))
	must(t, err)
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("image tree has mode %v, want its own 0755", fi.Mode().Perm())
	}
}

func TestMakeMountPoint(t *testing.T) {
	requireRoot(t)
	victim := filepath.Join(t.TempDir(), "victim")
	must(t, os.MkdirAll(victim, 0o755))
	tests := []struct {
		name   string
		setup  func(t *testing.T, p string)
		reason string
	}{
		{name: "missing: created"},
		{name: "an existing directory of ours", setup: func(t *testing.T, p string) { mkdir(t, p, 0o755) }},
		{name: "a symlink", reason: "is a symlink", setup: func(t *testing.T, p string) { must(t, os.Symlink(victim, p)) }},
		{name: "a dangling symlink", reason: "is a symlink",
			setup: func(t *testing.T, p string) { must(t, os.Symlink(victim+"/new", p)) }},
		{name: "a file", reason: "is not a directory", setup: func(t *testing.T, p string) { must(t, os.WriteFile(p, nil, 0o600)) }},
		{name: "a directory of another user", reason: "is owned by uid 65534",
			setup: func(t *testing.T, p string) { mkdir(t, p, 0o700); must(t, os.Chown(p, other, other)) }},
		{name: "a directory writable by others", reason: "is writable by others",
			setup: func(t *testing.T, p string) { mkdir(t, p, 0o703) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := stateTree(t)
			p := filepath.Join(root, "mnt", "new")
			if tc.setup != nil {
				tc.setup(t, p)
			}
			err := MakeMountPoint(root, p)
			wantRefusal(t, err, root, map[bool]string{true: "mnt/new"}[tc.reason != ""], tc.reason)
			if tc.reason == "" {
				fi, err := os.Lstat(p)
				must(t, err)
				if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
					t.Fatalf("mount point is %v, want a 0700 directory", fi.Mode())
				}
			}
			if _, err := os.Lstat(victim + "/new"); err == nil {
				t.Fatal("created a directory through a symlink")
			}
		})
	}
}
