// Package testns starts, for tests, a process that holds one mount from a
// mount namespace of its own and lets go of every other test's mounts.
//
// unshare copies the whole mount table: a holder made with it alone would
// also hold the sandboxes of every test running beside it (go test runs
// packages, and testscript runs scripts, in parallel), and their closes
// would rightly refuse.
package testns

import (
	"os"
	"os/exec"
)

// Script is a shell program: $1 is the mount to keep, $2 a file to create
// once the other mounts under $3 are gone; then it sleeps a minute.
const Script = `keep=$1 ready=$2 under=$3
awk -v k="$keep" -v u="$under/" 'index($5, u) == 1 && $5 != k && index(k, $5 "/") != 1 {print $5}' /proc/self/mountinfo |
sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
touch "$ready"
exec sleep 60`

// Command returns the unshare command of a holder of keep that creates
// ready when it holds keep and no other mount under the temporary
// directory.
func Command(keep, ready string) *exec.Cmd {
	return exec.Command("unshare", "--mount", "--propagation", "private",
		"sh", "-c", Script, "sh", keep, ready, os.TempDir())
}
