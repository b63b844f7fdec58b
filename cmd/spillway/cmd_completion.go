package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/persist"
)

// completionFlag is the hidden flag through which urfave/cli asks a
// command for completions; the shell scripts below pass it.
const completionFlag = "--generate-bash-completion"

// completionScripts ask spillway itself for the words to offer, so sandbox,
// image, exception and record names come from the state directory.
var completionScripts = map[string]string{
	"bash": `# bash completion for spillway: eval "$(spillway completion bash)"
_spillway_complete() {
	local cur opts
	COMPREPLY=()
	cur="${COMP_WORDS[COMP_CWORD]}"
	if [[ "$cur" == -* ]]; then
		opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" ` + completionFlag + ` 2>/dev/null)
	else
		opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" ` + completionFlag + ` 2>/dev/null)
	fi
	COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o bashdefault -o default -F _spillway_complete spillway
`,
	"zsh": `#compdef spillway
# zsh completion for spillway: spillway completion zsh > "${fpath[1]}/_spillway"
_spillway() {
	local -a opts
	local cur=${words[-1]}
	if [[ "$cur" == -* ]]; then
		opts=("${(@f)$(${words[@]:0:#words[@]-1} $cur ` + completionFlag + ` 2>/dev/null)}")
	else
		opts=("${(@f)$(${words[@]:0:#words[@]-1} ` + completionFlag + ` 2>/dev/null)}")
	fi
	if [[ -n "${opts[1]}" ]]; then
		_describe 'values' opts
	else
		_files
	fi
}
compdef _spillway spillway
`,
	"fish": `# fish completion for spillway: spillway completion fish > ~/.config/fish/completions/spillway.fish
function __spillway_complete
	set -l tokens (commandline -opc)
	set -l cur (commandline -ct)
	if string match -q -- '-*' $cur
		$tokens $cur ` + completionFlag + ` 2>/dev/null
	else
		$tokens ` + completionFlag + ` 2>/dev/null
	end
end
complete -c spillway -f -a '(__spillway_complete)'
`,
}

func completionCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		Description: `Prints a script that completes commands, flags and the names of
sandboxes, images, exceptions and pending records. To use it:

   bash:  eval "$(spillway completion bash)"   (e.g. in ~/.bashrc)
   zsh:   spillway completion zsh > "${fpath[1]}/_spillway"
   fish:  spillway completion fish > ~/.config/fish/completions/spillway.fish`,
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "bash|zsh|fish"); err != nil {
				return err
			}
			s, ok := completionScripts[c.Args().First()]
			if !ok {
				return usageError("unknown shell %q: use bash, zsh or fish", c.Args().First())
			}
			_, err := fmt.Fprint(t.out, s)
			return err
		},
		BashComplete: func(c *cli.Context) {
			for _, sh := range []string{"bash", "fish", "zsh"} {
				fmt.Fprintln(t.out, sh)
			}
		},
	}
}

// completedNames says which names each command's first argument takes
// ("*" after the kind: every argument takes one).
var completedNames = map[string]string{
	"open": persist.NameSandboxes, "path": persist.NameSandboxes, "run": persist.NameSandboxes,
	"shell": persist.NameSandboxes, "diff": persist.NameSandboxes, "close": persist.NameSandboxes,
	"rm": persist.NameSandboxes, "log": persist.NameSandboxes,
	"image rm":          persist.NameImages,
	"exception add":     persist.NameSandboxes,
	"exception ls":      persist.NameSandboxes,
	"exception lint":    persist.NameSandboxes,
	"exception show":    persist.NameExceptions,
	"exception revoke":  persist.NameExceptions,
	"persisted ls":      persist.NameSandboxes,
	"persisted cat":     persist.NameSandboxes,
	"persisted export":  persist.NameSandboxes,
	"persisted history": persist.NameSandboxes,
	"review ls":         persist.NameSandboxes,
	"review show":       persist.NamePending,
	"review approve":    persist.NamePending + "*",
	"review reject":     persist.NamePending + "*",
}

// setCompletion gives every command a completer: flags when the word being
// completed starts with "-", else subcommands or names from the state
// directory.
func setCompletion(t *term, cmds []*cli.Command, parent string) {
	for _, c := range cmds {
		full := strings.TrimSpace(parent + " " + c.Name)
		if len(c.Subcommands) > 0 {
			setCompletion(t, c.Subcommands, full)
		}
		if c.BashComplete != nil {
			continue
		}
		kind := completedNames[full]
		cmd := c
		c.BashComplete = func(ctx *cli.Context) {
			if t.completingFlag {
				for _, f := range cmd.Flags {
					for _, n := range f.Names() {
						if len(n) > 1 {
							fmt.Fprintln(t.out, "--"+n)
						}
					}
				}
				return
			}
			for _, s := range cmd.Subcommands {
				if !s.Hidden && s.Name != "help" {
					fmt.Fprintln(t.out, s.Name)
				}
			}
			every := strings.HasSuffix(kind, "*")
			if kind == "" || (!every && ctx.NArg() > 0) {
				return
			}
			for _, n := range completionNames(ctx, strings.TrimSuffix(kind, "*")) {
				fmt.Fprintln(t.out, n)
			}
		}
	}
}

// completionNames lists names for a completion, or nothing when the state
// directory is missing or busy: completing must never create state or wait.
func completionNames(c *cli.Context, kind string) []string {
	g := globals(c)
	if _, err := os.Stat(g.Root); err != nil {
		return nil
	}
	e, err := persist.OpenEnv(c.Context, persist.Options{Root: g.Root, Snapshotter: g.Snapshotter, Store: g.Store, Blobs: g.Blobs, LockTimeout: 200 * time.Millisecond, What: "completion"})
	if err != nil {
		return nil
	}
	defer e.Close()
	names, _ := e.Names(kind, 200)
	return names
}
