package persist

import (
	"reflect"
	"sort"
	"testing"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/persist/hostile"
)

// TestLayGuestChange: a running VM's changes combine with the host's upper
// layer as the kernel's overlay would show them.
func TestLayGuestChange(t *testing.T) {
	host := map[string]hostile.Change{
		"/d/added":      {Kind: change.KindAdd, Path: "/d/added", Type: change.TypeFile},
		"/d/modified":   {Kind: change.KindModify, Path: "/d/modified", Type: change.TypeFile, Below: &hostile.Below{Type: change.TypeSymlink}},
		"/d/deleted":    {Kind: change.KindDelete, Path: "/d/deleted", Type: change.TypeFile},
		"/tree":         {Kind: change.KindAdd, Path: "/tree", Type: change.TypeDir},
		"/tree/a":       {Kind: change.KindAdd, Path: "/tree/a", Type: change.TypeFile},
		"/tree/b":       {Kind: change.KindAdd, Path: "/tree/b", Type: change.TypeFile},
		"/keep":         {Kind: change.KindAdd, Path: "/keep", Type: change.TypeDir},
		"/keep/inside":  {Kind: change.KindAdd, Path: "/keep/inside", Type: change.TypeFile},
		"/file-now-dir": {Kind: change.KindModify, Path: "/file-now-dir", Type: change.TypeFile},
	}
	for _, g := range []GuestChange{
		{Kind: change.KindDelete, Path: "/d/added", Type: change.TypeFile},    // added, then deleted: nothing
		{Kind: change.KindDelete, Path: "/d/modified", Type: change.TypeFile}, // a deletion of what was below
		{Kind: change.KindAdd, Path: "/d/deleted", Type: change.TypeFile, Size: 3},
		{Kind: change.KindDelete, Path: "/tree", Type: change.TypeDir}, // its subtree goes too
		{Kind: change.KindModify, Path: "/keep", Type: change.TypeDir}, // a directory: the host's entries stay
		{Kind: change.KindAdd, Path: "/new", Type: change.TypeFile, Size: 5},
		{Kind: change.KindModify, Path: "/file-now-dir", Type: change.TypeDir},
	} {
		layGuestChange(host, g)
	}
	got := map[string]change.Kind{}
	for p, c := range host {
		got[p] = c.Kind
	}
	want := map[string]change.Kind{
		"/d/modified": change.KindDelete, "/d/deleted": change.KindModify, "/keep": change.KindAdd, "/keep/inside": change.KindAdd,
		"/new": change.KindAdd, "/file-now-dir": change.KindModify,
	}
	if !reflect.DeepEqual(got, want) {
		var ps []string
		for p := range got {
			ps = append(ps, p)
		}
		sort.Strings(ps)
		t.Fatalf("got %v (%v), want %v", got, ps, want)
	}
	if host["/d/modified"].Type != change.TypeSymlink || host["/d/deleted"].Size != 3 {
		t.Errorf("deleted type %q, re-made size %d", host["/d/modified"].Type, host["/d/deleted"].Size)
	}
}
