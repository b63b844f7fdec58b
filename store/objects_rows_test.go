package store

import (
	"testing"

	"github.com/containerd/errdefs"
)

// TestRowNamesChecked: a sandbox or image row whose name is not its key's,
// or not a valid name, is refused when read back, by Get and by List.
// spillway never writes one; any host of a shared ledger can, and the
// callers make mount points and snapshot keys of these names.
func TestRowNamesChecked(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		for _, c := range []struct {
			what, keyed, named string
		}{
			{"a name that climbs out", "../x", "../x"},
			{"a name with a slash", "docs/session", "docs/session"},
			{"a row naming another sandbox", "docs", "secret"},
		} {
			t.Run(c.what, func(t *testing.T) {
				s, _ := newStore(t)
				if err := s.Update(func(tx *Tx) error {
					if err := tx.put(key(pImage, c.keyed), &Image{Name: c.named, Snapshot: "img/" + c.named}); err != nil {
						return err
					}
					return tx.put(key(pSandbox, c.keyed), &Sandbox{Name: c.named, Image: "base"})
				}); err != nil {
					t.Fatal(err)
				}
				s.View(func(tx *Tx) error {
					if _, err := tx.GetSandbox(c.keyed); !errdefs.IsDataLoss(err) {
						t.Errorf("GetSandbox(%q) of a row naming %q: %v, want a data-loss error", c.keyed, c.named, err)
					}
					if sbs, err := tx.ListSandboxes(); !errdefs.IsDataLoss(err) {
						t.Errorf("ListSandboxes with a row %q naming %q: %d rows, %v, want a data-loss error", c.keyed, c.named, len(sbs), err)
					}
					if _, err := tx.GetImage(c.keyed); !errdefs.IsDataLoss(err) {
						t.Errorf("GetImage(%q) of a row naming %q: %v, want a data-loss error", c.keyed, c.named, err)
					}
					if ims, err := tx.ListImages(); !errdefs.IsDataLoss(err) {
						t.Errorf("ListImages with a row %q naming %q: %d rows, %v, want a data-loss error", c.keyed, c.named, len(ims), err)
					}
					return nil
				})
			})
		}
		// A row spillway writes reads back.
		s, _ := newStore(t)
		if err := s.Update(func(tx *Tx) error { return tx.PutSandbox(&Sandbox{Name: "docs-1.a_b", Image: "base"}) }); err != nil {
			t.Fatal(err)
		}
		if err := s.View(func(tx *Tx) error { _, err := tx.GetSandbox("docs-1.a_b"); return err }); err != nil {
			t.Error(err)
		}
	})
}
