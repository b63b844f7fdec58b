package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
)

// scriptCmds are the extra commands of the CLI scripts.
var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// sbwrite NAME PATH CONTENT: write CONTENT into an open sandbox's root.
	"sbwrite": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 {
			ts.Fatalf("usage: sbwrite SANDBOX PATH CONTENT")
		}
		p := filepath.Join(ts.Getenv("SPILLWAY_ROOT"), "mnt", args[0], args[1])
		ts.Check(os.MkdirAll(filepath.Dir(p), 0o755))
		ts.Check(os.WriteFile(p, []byte(args[2]), 0o644))
	},
	// sbexists [!] NAME PATH: the path exists in an open sandbox's root.
	"sbexists": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: sbexists SANDBOX PATH")
		}
		_, err := os.Lstat(filepath.Join(ts.Getenv("SPILLWAY_ROOT"), "mnt", args[0], args[1]))
		if neg && err == nil {
			ts.Fatalf("%s exists in %s", args[1], args[0])
		}
		if !neg && err != nil {
			ts.Fatalf("%s: %v", args[1], err)
		}
	},
	// nocontrol FILE: the file holds no raw control byte but newline and tab.
	"nocontrol": func(ts *testscript.TestScript, neg bool, args []string) {
		data := []byte(ts.ReadFile(args[0]))
		for _, c := range data {
			if (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f {
				ts.Fatalf("raw control byte %#x in %s", c, args[0])
			}
		}
	},
	// sbhostile NAME DIR: create files with hostile names in DIR of an open
	// sandbox's root: a newline, an ANSI escape, invalid UTF-8, a 255-byte
	// name, "-rf" and "--help".
	"sbhostile": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: sbhostile SANDBOX DIR")
		}
		dir := filepath.Join(ts.Getenv("SPILLWAY_ROOT"), "mnt", args[0], args[1])
		ts.Check(os.MkdirAll(dir, 0o755))
		for _, n := range hostileNames {
			ts.Check(os.WriteFile(filepath.Join(dir, n), []byte("hostile "+n), 0o644))
		}
	},
}

var hostileNames = []string{"new\nline", "esc\x1b[2J\x1b[31mred", "bad\xff\xfeutf8", strings.Repeat("n", 255), "-rf", "--help"}
