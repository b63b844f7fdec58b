package store

import (
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// A newer directory record replaces what lies beneath, unless only its
// mode or owner changed (MetaOnly); the flag counts on a directory's
// modify only, not on a delete, a file or an add that claims it.
func TestReplacesMetaOnly(t *testing.T) {
	old := &Record{ID: 1, Sandbox: "s", Path: "/d/f", Kind: change.KindAdd, Type: change.TypeFile, Status: change.StatusApproved}
	for _, c := range []struct {
		anc  Record
		want bool
	}{
		{Record{Kind: change.KindModify, Type: change.TypeDir}, true},
		{Record{Kind: change.KindAdd, Type: change.TypeDir}, true},
		{Record{Kind: change.KindModify, Type: change.TypeDir, MetaOnly: true}, false},
		{Record{Kind: change.KindAdd, Type: change.TypeDir, MetaOnly: true}, true},
		{Record{Kind: change.KindDelete, Type: change.TypeDir, MetaOnly: true}, true},
		{Record{Kind: change.KindModify, Type: change.TypeFile, MetaOnly: true}, true},
	} {
		anc := c.anc
		anc.ID, anc.Sandbox, anc.Path = 2, "s", "/d"
		if got := Replaces(&anc, old, nil); got != c.want {
			t.Errorf("%s %s meta-only %v: replaces %v, want %v", anc.Kind, anc.Type, anc.MetaOnly, got, c.want)
		}
		var f StateFilter
		f.Keep(&anc)
		if kept := f.Keep(old); kept == c.want && anc.Type == change.TypeDir && anc.Kind != change.KindDelete {
			t.Errorf("%s %s meta-only %v: the state filter keeps the file: %v", anc.Kind, anc.Type, anc.MetaOnly, kept)
		}
	}
}
