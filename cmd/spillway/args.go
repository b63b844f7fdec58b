package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// reorderArgs lets flags follow positional arguments, as SPEC.md writes them
// (`spillway create NAME --image IMAGE`): urfave/cli stops parsing flags at
// the first positional argument, so the leaf command's flags are moved in
// front and its positional arguments put after a "--". Everything after a
// "--" typed by the user stays positional, in order.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	flags := app.Flags
	cmds := app.Commands
	// Global flags and the command path.
	for len(rest) > 0 {
		a := rest[0]
		if a == "--" {
			return append(out, rest...)
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			n := flagArity(flags, a)
			out = append(out, rest[:min(n, len(rest))]...)
			rest = rest[min(n, len(rest)):]
			continue
		}
		cmd := findCommand(cmds, a)
		if cmd == nil {
			return append(out, rest...)
		}
		out = append(out, a)
		rest = rest[1:]
		if len(cmd.Subcommands) > 0 {
			flags, cmds = cmd.Flags, cmd.Subcommands
			continue
		}
		return append(out, splitLeaf(cmd.Flags, rest)...)
	}
	return out
}

// commandWords returns the command path args name (the words after the
// program and its global flags that are commands: "fleet", "evict") and
// where the first word that is not one stands in args (len(args): none).
func commandWords(app *cli.App, args []string) (path []string, next int) {
	flags, cmds := app.Flags, app.Commands
	for i := 1; i < len(args); {
		a := args[i]
		if a == "--" {
			return path, len(args)
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			i += flagArity(flags, a)
			continue
		}
		cmd := findCommand(cmds, a)
		if cmd == nil || len(cmd.Subcommands) == 0 {
			if cmd != nil {
				path = append(path, a)
				i++
			}
			return path, i
		}
		path = append(path, a)
		flags, cmds = cmd.Flags, cmd.Subcommands
		i++
	}
	return path, len(args)
}

// splitLeaf returns a leaf command's flags, then "--", then its positional
// arguments.
func splitLeaf(flags []cli.Flag, rest []string) []string {
	var fl, pos []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			pos = append(pos, rest[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" && isFlag(flags, a) {
			n := flagArity(flags, a)
			fl = append(fl, rest[i:min(i+n, len(rest))]...)
			i += n - 1
			continue
		}
		pos = append(pos, a)
	}
	if len(pos) == 0 {
		return fl
	}
	return append(append(fl, "--"), pos...)
}

func flagName(a string) string {
	n := strings.TrimLeft(a, "-")
	if i := strings.IndexByte(n, '='); i >= 0 {
		n = n[:i]
	}
	return n
}

func lookupFlag(flags []cli.Flag, a string) cli.Flag {
	n := flagName(a)
	for _, f := range flags {
		for _, name := range f.Names() {
			if name == n {
				return f
			}
		}
	}
	if n == "help" || n == "h" {
		return &cli.BoolFlag{Name: "help"}
	}
	return nil
}

// isFlag says whether a is one of the command's flags; an unknown "-x" is
// left for urfave/cli to report, except names that are clearly positional.
func isFlag(flags []cli.Flag, a string) bool {
	return lookupFlag(flags, a) != nil || strings.HasPrefix(a, "--") && !strings.Contains(a, "/")
}

// flagArity is 1 for boolean flags and "--x=v", 2 for "--x v".
func flagArity(flags []cli.Flag, a string) int {
	if strings.Contains(a, "=") {
		return 1
	}
	f := lookupFlag(flags, a)
	if f == nil {
		return 1
	}
	if dv, ok := f.(cli.DocGenerationFlag); ok && !dv.TakesValue() {
		return 1
	}
	return 2
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
