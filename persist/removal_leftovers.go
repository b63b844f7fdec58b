package persist

import (
	"context"
	"strings"
)

// A sandbox's removal commits its absence from the ledger first, then
// removes what it leaves (finishRemoval); killed in between, it leaves its
// snapshots, recovery sessions, records and lock file, and no listing shows
// the sandbox any more. Its lock file is the last thing to go, so the lock
// files of names the ledger lacks are where to look. Only on a ledger of
// the root's own: on a shared one another host may have created the name
// again since (its gc deleted the new sandbox's records), and an rm on
// another host leaves this host's lock file and layers as a matter of
// course.

// unfinishedRemovals returns the sandbox names whose removal left
// something (removalLeftovers): a lock file remains and the ledger has no
// such sandbox.
func (e *Env) unfinishedRemovals(ctx context.Context) ([]string, error) {
	if e.sharedLedger() {
		// Another host may create the name again at any moment, and rm or
		// create on a host finishes what it finds there (removalLeftovers):
		// gc must not delete a name's records on its own word.
		return nil, nil
	}
	names, err := e.strayLockNames()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if !strings.HasPrefix(n, imageLockPrefix) && e.removalLeftovers(ctx, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// finishRemovals finishes the removals unfinishedRemovals finds (gc),
// keeping this host's fenced sessions as a removal from another host does,
// and returns their names.
func (e *Env) finishRemovals(ctx context.Context) ([]string, error) {
	names, err := e.unfinishedRemovals(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if err := e.finishRemoval(ctx, n, false); err != nil {
			return nil, err
		}
	}
	return names, nil
}
