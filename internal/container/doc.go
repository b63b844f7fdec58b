// Package container runs a command inside an open sandbox's root as an OCI
// container (runc, or another runtime with runc's command line), and keeps
// the book of live runs so that close can refuse or stop them.
//
// The lifecycle of one run, all under a state directory DIR (spillway's
// <root>/run):
//
//  1. Register writes DIR/sbx/<sandbox>/<id>.json naming the container id
//     and the owning spillway process (pid and start time). The caller does
//     this while it still holds spillway's lock, so that a close that takes
//     the lock next sees the run.
//  2. Exec writes the bundle DIR/sbx/<sandbox>/<id>/config.json (a spec from
//     containerd's pkg/oci) and runs `runc run` in the foreground: stdio and
//     the terminal pass through, signals are forwarded, CMD's status is
//     returned. The new pid namespace ends with CMD: every process it
//     started is killed by the kernel when it exits.
//  3. Done deletes the container (`runc delete --force`), then the bundle,
//     then the entry: a crash between steps leaves an entry behind.
//
// An entry whose owner is gone (a spillway killed with SIGKILL) is stale:
// Live and Register kill what is left of its container and remove it, so
// nothing of a dead run blocks the next run or close.
package container
