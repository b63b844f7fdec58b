package statedir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// layout is what spillway keeps in a state directory and how each path is
// checked; "*" stands for every entry of a directory. Paths that do not
// exist are skipped (they are created later, 0700, inside checked
// directories). Entries not listed here are never opened by path.
var layout = []struct {
	pattern string
	rule    rule
}{
	{"lock", privateFile},       // internal/lock checks it again on the open descriptor
	{"agent.lock", privateFile}, // held by a running fleet agent (persist.Env.LockAgent)
	{"host-id", privateFile},
	{"root-id", privateFile},
	{"ledger-id", privateFile},
	{"blobs-dir", privateFile},
	{"store", privateDir},
	{"store/*", privateFile}, // badger's files, opened (and LOCK truncated) by path
	{"snapshots", privateDir},
	{"snapshots/*", privateDir},              // the snapshotter's root, one per kind
	{"snapshots/*/metadata.db", privateFile}, // its bolt database
	{"snapshots/*/snapshots", privateDir},
	{"snapshots/*/snapshots/*", entryDir}, // one tree per snapshot: the image's owners
	{"snapshots/*/import", privateDir},
	{"snapshots/*/import/*", entryDir}, // mount points of imports
	{"blobs", privateDir},
	{"blobs/sha256", privateDir}, // blobs themselves are opened with O_NOFOLLOW
	{"blobs/tmp", privateDir},
	{"mnt", privateDir},
	{"mnt/*", entryDir}, // mount points of open sandboxes: a mounted root has the image's owner
	{"tmp", privateDir},
	{"trash", privateDir},
	{"recovery", privateDir},
	{"recovery/*", privateDir},   // one per sandbox
	{"recovery/*/*", privateDir}, // one per session; its manifest is opened with O_NOFOLLOW beneath it
	{"commits", privateDir},
	{"commits/*", privateDir},    // one per sandbox: this host's notes of its closes (persist/ledger_lost.go)
	{"commits/*/*", privateFile}, // a note, or a list of what a close persisted
	{"sessions", privateDir},
	{"sessions/*", privateFile}, // this host's open session of a sandbox (persist/open_journal.go)
	{"run", privateDir},
	{"run/runc", privateDir}, // runc's --root
	{"run/runc/*", noLink},
	{"run/sbx", privateDir},
	{"run/sbx/*", privateDir}, // one per sandbox
	{"run/sbx/*/*", noLink},   // bundles and run entries
}

// Check checks what the state directory root holds against the layout.
// Call it after Prepare, holding the state directory's lock.
func Check(root string) error {
	c := newChecker(root)
	for _, l := range layout {
		paths, err := expand(root, strings.Split(l.pattern, "/"))
		if err != nil {
			return fmt.Errorf("state directory %s: %w", root, err)
		}
		for _, p := range paths {
			if _, err := c.lstatCheck(p, l.rule); err != nil {
				return err
			}
		}
	}
	return nil
}

// expand returns the existing paths below dir that match names, where "*"
// matches any entry. It never reads a directory through a symlink: the
// layout checks each directory before the patterns that look inside it.
func expand(dir string, names []string) ([]string, error) {
	if len(names) == 0 {
		return []string{dir}, nil
	}
	var next []string
	if names[0] == "*" {
		fi, err := os.Lstat(dir)
		if errors.Is(err, os.ErrNotExist) || (err == nil && !fi.IsDir()) {
			return nil, nil
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			next = append(next, e.Name())
		}
	} else {
		next = []string{names[0]}
	}
	var out []string
	for _, n := range next {
		p := filepath.Join(dir, n)
		if len(names) > 1 {
			if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
				continue
			}
		}
		sub, err := expand(p, names[1:])
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}
