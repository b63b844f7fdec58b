package main

import (
	"bytes"
	"os"
	"testing"
)

const manPage = "../../docs/man/spillway.1"

// TestManPageIsCurrent checks that docs/man/spillway.1 was generated from
// the command definitions as they are; scripts/gen-man.sh regenerates it.
func TestManPageIsCurrent(t *testing.T) {
	app := newApp(&term{in: bytes.NewReader(nil), out: new(bytes.Buffer), err: new(bytes.Buffer)})
	app.Description = "Spillway manages disposable sandboxes: each starts from a clean image and rolls back to it on close; only changes matched by an explicit persistence exception survive, each recorded with the rule that let it through, open to review and revocable. See SPEC.md and docs/ for the whole contract."
	got, err := app.ToManWithSection(1)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("SPILLWAY_UPDATE_MAN") == "1" {
		if err := os.WriteFile(manPage, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(manPage)
	if err != nil {
		t.Fatalf("%v (generate it with: bash scripts/gen-man.sh)", err)
	}
	if string(want) != got {
		t.Fatalf("%s is out of date with the command definitions: run bash scripts/gen-man.sh", manPage)
	}
}
