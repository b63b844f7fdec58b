package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/persist"
)

// TestErrorsInputNamedOnce builds every persist.InputError that persist
// constructs and checks how message names its input: a flag the command
// line has, with two dashes exactly once, or an argument without dashes.
func TestErrorsInputNamedOnce(t *testing.T) {
	flags := map[string]bool{}
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			for _, f := range c.Flags {
				for _, n := range f.Names() {
					flags[n] = true
				}
			}
			walk(c.Subcommands)
		}
	}
	app := newApp(&term{})
	for _, f := range app.Flags {
		flags[f.Names()[0]] = true
	}
	walk(app.Commands)

	inputs := inputErrorInputs(t, filepath.Join("..", "..", "persist"))
	if len(inputs) < 10 {
		t.Fatalf("found only %d InputError constructions in persist: %q", len(inputs), inputs)
	}
	for _, in := range inputs {
		name := strings.TrimLeft(in, "-")
		msg := message(&persist.InputError{Input: in, Problem: "is wrong"})
		if strings.Contains(msg, "---") {
			t.Errorf("input %q: %q", in, msg)
		}
		switch {
		case positionalInputs[name]:
			if msg != name+" is wrong" {
				t.Errorf("argument %q: %q, want %q", in, msg, name+" is wrong")
			}
		case flags[name]:
			if msg != "--"+name+" is wrong" {
				t.Errorf("flag %q: %q, want %q", in, msg, "--"+name+" is wrong")
			}
		default:
			t.Errorf("input %q is no flag of the command line and not in positionalInputs", in)
		}
	}
}

// inputErrorInputs returns the Input of every InputError{Input: "…"}
// literal in the Go files of dir (tests left out).
func inputErrorInputs(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, p := range files {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if id, ok := lit.Type.(*ast.Ident); !ok || id.Name != "InputError" {
				return true
			}
			for _, el := range lit.Elts {
				kv, ok := el.(*ast.KeyValueExpr)
				if !ok || kv.Key.(*ast.Ident).Name != "Input" {
					continue
				}
				bl, ok := kv.Value.(*ast.BasicLit)
				if !ok {
					t.Errorf("%s: InputError's Input is not a string literal", fset.Position(kv.Pos()))
					continue
				}
				s, err := strconv.Unquote(bl.Value)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, s)
			}
			return true
		})
	}
	return out
}

// TestNotClosedHint: the hint of a sandbox that is not closed fits the
// command refused and where the sandbox is open (rm --force discards a
// sandbox: prune must not suggest it).
func TestNotClosedHint(t *testing.T) {
	for _, c := range []struct {
		err  *persist.NotClosedError
		want string
	}{
		{&persist.NotClosedError{Sandbox: "docs", State: "open", Op: "rm"}, "sandbox docs is open (close it first, or use rm --force to discard everything)"},
		{&persist.NotClosedError{Sandbox: "docs", State: "closing", Op: "prune"}, "sandbox docs is closing (finish its close first: spillway close docs)"},
		{&persist.NotClosedError{Sandbox: "docs", State: "open", Op: "rm", Host: "h2"}, "sandbox docs is open on host h2 (close it there first; if that host is dead: spillway fleet evict h2 --reason TEXT)"},
	} {
		if got := message(c.err); got != c.want {
			t.Errorf("%+v: %q, want %q", c.err, got, c.want)
		}
	}
}
