package progress

import "testing"

type record struct{ got []string }

func (r *record) Update(s Status) { r.got = append(r.got, s.String()) }
func (r *record) Done()           { r.got = append(r.got, "done") }

func TestStatusAndNamed(t *testing.T) {
	r := &record{}
	p := Named(r, "importing base")
	p.Update(Status{Items: 2000, Unit: "files", Bytes: 3 << 19})
	p.Update(Status{What: "applying persisted state", Items: 3000, Total: 10000, Unit: "files"})
	p.Done()
	want := []string{"importing base: 2000 files, 1.5 MiB", "applying persisted state: 3000/10000 files", "done"}
	if len(r.got) != len(want) {
		t.Fatalf("got %q, want %q", r.got, want)
	}
	for i := range want {
		if r.got[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, r.got[i], want[i])
		}
	}
	Or(nil).Update(Status{}) // the no-op default
	Or(nil).Done()
}
