package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	xterm "golang.org/x/term"

	"github.com/spillway/spillway/internal/container"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/sandboxrun"
	"github.com/spillway/spillway/vm"
	"github.com/spillway/spillway/vm/proto"
)

// vmOptions are the options of run --vm and shell --vm.
type vmOptions struct {
	Sandbox   string
	Args      []string
	MemoryMiB int
	CPUs      int
	Share     string
	Env       []string
	Workdir   string
	User      string
	TTY       bool
	Accel     string
	Close     bool // run --close
}

// vmRunFlags are the flags run adds for VMs.
func vmRunFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "vm", Usage: "run CMD in a disposable VM of sandbox `NAME` (see docs/vm.md)"},
		&cli.StringFlag{Name: "memory", Usage: "the VM's memory `SIZE`", Value: "512M"},
		&cli.IntFlag{Name: "cpus", Usage: "the VM's CPUs", Value: 1},
		&cli.StringFlag{Name: "share", Usage: "the VM's root: none (disks, changes streamed back) or virtiofs (shared live)", Value: proto.ShareNone},
		&cli.StringSliceFlag{Name: "env", Usage: "set `K=V` for CMD (repeat for more)"},
		&cli.StringFlag{Name: "workdir", Usage: "CMD's working `DIR` (absolute)", DefaultText: "/"},
		&cli.StringFlag{Name: "accel", Usage: "VM acceleration: auto, kvm or tcg", Value: vm.AccelAuto},
	}
}

// vmOnlyFlags refuses the VM flags on a container run.
func vmOnlyFlags(c *cli.Context) error {
	for _, f := range []string{"memory", "cpus", "share", "accel"} {
		if c.IsSet(f) {
			return usageError("--%s needs --vm NAME", f)
		}
	}
	return nil
}

// vmOptionsFrom reads the VM flags of run or shell.
func vmOptionsFrom(c *cli.Context, args []string, tty bool) (vmOptions, error) {
	if c.String("net") == "host" {
		return vmOptions{}, usageError("--net host is not available with --vm: a VM has no network")
	}
	o := vmOptions{Sandbox: c.String("vm"), Args: args, CPUs: c.Int("cpus"), Share: c.String("share"),
		Env: c.StringSlice("env"), Workdir: c.String("workdir"), User: c.String("user"), TTY: tty, Accel: c.String("accel")}
	mem, err := units.ParseSize(c.String("memory"))
	if err != nil || mem < 64<<20 {
		return o, usageError("invalid --memory %q: use a size of at least 64M, e.g. 512M or 2G", c.String("memory"))
	}
	o.MemoryMiB = int(mem >> 20)
	if o.CPUs < 1 || o.CPUs > 64 {
		return o, usageError("invalid --cpus %d: use 1 to 64", o.CPUs)
	}
	if o.Share != proto.ShareNone && o.Share != proto.ShareVirtiofs {
		return o, usageError("unknown --share %q: use none or virtiofs", o.Share)
	}
	switch o.Accel {
	case vm.AccelAuto, vm.AccelKVM, vm.AccelTCG:
	default:
		return o, usageError("unknown --accel %q: use auto, kvm or tcg", o.Accel)
	}
	if err := checkEnvWorkdir(o.Env, o.Workdir); err != nil {
		return o, err
	}
	if o.User != "" {
		if _, _, _, err := container.ParseUser(o.User); err != nil {
			return o, usageError("%v", err)
		}
	}
	if len(args) == 0 {
		return o, usageError("usage: spillway run --vm NAME [--memory SIZE] [--cpus N] [--share none|virtiofs] [-t] [--close] -- CMD [ARG…]")
	}
	return o, nil
}

// runVMAction is run --vm and shell --vm: the VM run, then --close.
func runVMAction(c *cli.Context, t *term, args []string, tty, closeAfter bool) error {
	o, err := vmOptionsFrom(c, args, tty)
	if err != nil {
		return err
	}
	o.Close = closeAfter
	return runVM(c.Context, o, globals(c), t)
}

// runVM runs CMD in a VM through sandboxrun.Run (open, register, run,
// clean up and, with --close, close), as run does a container: the VM
// runner boots the guest with nothing of the state directory held, then
// applies the guest's changes to the sandbox's upper layer.
func runVM(ctx context.Context, o vmOptions, g globalOptions, t *term) error {
	if f, ok := t.in.(*os.File); o.TTY && (!ok || !isTerminal(f)) {
		return usageError("-t needs a terminal on stdin")
	}
	start := time.Now()
	root, err := filepath.Abs(g.Root)
	if err != nil {
		return err
	}
	cfg, err := vm.LoadConfig(root)
	if errors.Is(err, vm.ErrNoSetup) {
		cfg, err = vm.Setup(ctx, root, vm.SetupOptions{Accel: o.Accel}, func(s string) { t.warnf("%s", s) })
	}
	if err != nil {
		return err
	}
	switch {
	case o.Accel == vm.AccelTCG:
		cfg.Accel = vm.AccelTCG
	case o.Accel == vm.AccelKVM && cfg.Accel != vm.AccelKVM:
		return fmt.Errorf("--accel kvm: KVM is not usable here (%s)", cfg.AccelReason)
	}
	vr := &vmRunner{o: o, g: g, t: t, cfg: cfg, root: root, start: start}
	ro := sandboxrun.Options{Warn: func(msg string) { t.warnf("%s", msg) }}
	if o.Share == proto.ShareNone {
		// The guest's changes land in the upper layer at the end: no other
		// run may be writing there meanwhile.
		ro.Alone = "a VM without a shared file system needs it alone (or use --share virtiofs)"
		ro.Locked = func(ctx context.Context, e *persist.Env, sb *sandboxrun.Sandbox) (err error) {
			vr.layers, err = e.SandboxLayers(ctx, sb.Name)
			return err
		}
	}
	return runAndClose(ctx, g, t, o.Sandbox, o.Close, vr.run, ro)
}

// vmRunner is the sandboxrun.Runner of run --vm.
type vmRunner struct {
	o      vmOptions
	g      globalOptions
	t      *term
	cfg    *vm.Config
	root   string
	start  time.Time
	layers *persist.Layers // share none: read under the lock
}

// run boots the guest and, in the default mode, applies its changes. It
// returns CMD's status; a VM that failed before CMD is 125 (printed).
func (vr *vmRunner) run(ctx context.Context, sb *sandboxrun.Sandbox) (int, error) {
	o, t, book, entry := vr.o, vr.t, sb.Book, sb.Entry
	// A directory of its own, never an earlier run's: a run killed before
	// it applied its guest's changes left them on its scratch disk there.
	if err := os.MkdirAll(filepath.Join(book.Dir, "vm"), 0o700); err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp(filepath.Join(book.Dir, "vm"), entry.ID+".")
	if err != nil {
		return 0, err
	}
	r := &vm.Run{Config: vr.cfg, StateRoot: vr.root, Dir: dir, Share: o.Share, Root: sb.Opened.Path,
		MemoryMiB: o.MemoryMiB, CPUs: o.CPUs, Stdin: t.in, Stdout: t.out, Stderr: t.err,
		Req:         proto.Request{Args: o.Args, Env: o.Env, Dir: o.Workdir, User: o.User, TTY: o.TTY, Hostname: o.Sandbox},
		BootTimeout: envDuration("SPILLWAY_VM_BOOT_TIMEOUT", 0), Heartbeat: envDuration("SPILLWAY_VM_HEARTBEAT_TIMEOUT", 0),
		Started: func(pid int) {
			upper := ""
			if vr.layers != nil {
				upper = vr.layers.Upper
			}
			if err := book.SetVM(entry, pid, dir, upper); err != nil {
				t.warnf("record the VM's process: %v", err)
			}
		},
		Readied: func() { os.WriteFile(filepath.Join(dir, container.VMReadyFile), nil, 0o600) }}
	if vr.layers != nil {
		r.Upper, r.Lowers = vr.layers.Upper, vr.layers.Lowers
	}
	restore, sigs, winch := vmSignals(t, o.TTY, &r.Req)
	r.Signals, r.Winch = sigs, winch
	out, bootErr := r.Boot(ctx)
	restore()
	code, err := vmStatus(t, o.Sandbox, out, bootErr)
	applied := time.Now()
	var aerr error
	if out != nil && out.Spool != "" && (out.Result.Ready || out.Rescued) && !out.Result.Killed {
		aerr = applyVMChanges(ctx, vr.g, t, o.Sandbox, out, dir)
	}
	writeVMTimings(vr.start, applied, out)
	if aerr != nil {
		// A lock held past --lock-timeout, the ledger unavailable, or
		// close --force that closed the sandbox meanwhile. The entry stays:
		// an orphan whose scratch disk the next close, run or rm --force
		// of this session applies (one of a later session is dropped,
		// its directory kept).
		if sb.Entry.VM != nil && sb.Entry.VM.Upper != "" {
			sb.KeepEntry = true
			t.warnf("the VM's changes were not applied (%v); the next close or run of %s applies them (kept in %s)", aerr, o.Sandbox, dir)
		} else {
			t.warnf("the VM's changes were not applied (%v); they are kept in %s", aerr, dir)
		}
		return code, err
	}
	if err == nil && (out == nil || out.Spool == "" || out.Verified) {
		os.RemoveAll(dir)
	}
	return code, err
}

func init() { container.RescueVM = rescueStoppedVM }

// rescueStoppedVM gets back the changes of a VM that close --force killed:
// a rescue guest streams its scratch disk, and the stream goes to the
// sandbox's upper layer before close reads it. close holds the lock.
func rescueStoppedVM(ctx context.Context, stateRoot string, v *container.VMProc) error {
	cfg, err := vm.LoadConfig(stateRoot)
	if err != nil {
		return err
	}
	r := &vm.Run{Config: cfg, StateRoot: stateRoot, Dir: v.Dir, MemoryMiB: 512,
		BootTimeout: envDuration("SPILLWAY_VM_BOOT_TIMEOUT", 0), Heartbeat: envDuration("SPILLWAY_VM_HEARTBEAT_TIMEOUT", 0)}
	out, err := r.Rescue(ctx)
	if errors.Is(err, vm.ErrNoScratch) {
		return nil // its owner applied the changes already
	}
	if err != nil {
		return fmt.Errorf("rescue the VM's changes (kept in %s): %w", v.Dir, err)
	}
	f, err := os.Open(out.Spool)
	if err != nil {
		return err
	}
	defer f.Close()
	sr, err := vm.MaterialiseKeeping(f, v.Upper, vm.DefaultStreamLimits, filepath.Join(v.Dir, "refused"))
	if err != nil {
		return err
	}
	if len(sr.Refused) > 0 {
		// close stages them for the recovery area (sandboxrun.BeforeUnmount)
		b, err := json.Marshal(sr.Refused)
		if err == nil {
			err = os.WriteFile(filepath.Join(v.Dir, vm.RefusedFile), b, 0o600)
		}
		if err != nil {
			return err
		}
	}
	if !out.Verified || !sr.Complete {
		return &container.RescueIncomplete{Dir: v.Dir, Why: streamShortBy(out, sr)}
	}
	if len(sr.Refused) > 0 {
		return nil // keep the directory: close stages what was refused
	}
	return os.RemoveAll(v.Dir)
}

// streamShortBy says why a VM's changes stream was not applied whole.
func streamShortBy(out *vm.Outcome, sr *vm.StreamResult) string {
	switch {
	case out.SpoolCut != "":
		return "cut short on the host: " + out.SpoolCut
	case sr.Err != "":
		return sr.Err
	}
	return "not confirmed by the guest"
}

// vmStatus turns a boot's outcome into run's status: CMD's own, or 125
// with one line when the VM failed before CMD started.
func vmStatus(t *term, sandbox string, out *vm.Outcome, bootErr error) (int, error) {
	var res *vm.Result
	if out != nil {
		res = out.Result
	}
	if res != nil {
		for _, n := range res.Notes {
			t.errorf(fmt.Errorf("run %s: %s", sandbox, escape.Name(n)))
		}
		if res.Exited {
			if bootErr != nil {
				t.warnf("%v", bootErr)
			}
			return res.Status, nil
		}
		if res.Error != "" {
			t.errorf(fmt.Errorf("run %s: vm: %s", sandbox, escape.Name(res.Error)))
			return container.ExitNotStarted, nil
		}
	}
	if bootErr == nil {
		bootErr = errors.New("vm: the guest ended without CMD's status")
	}
	t.errorf(fmt.Errorf("run %s: %w", sandbox, bootErr))
	return container.ExitNotStarted, nil
}

// applyVMChanges writes the guest's changes into the sandbox's upper layer
// under the state directory's lock, reporting refused entries.
func applyVMChanges(ctx context.Context, g globalOptions, t *term, sandbox string, out *vm.Outcome, dir string) error {
	f, err := os.Open(out.Spool)
	if err != nil {
		return err
	}
	defer f.Close()
	var sr *vm.StreamResult
	keep := filepath.Join(dir, "refused")
	err = withEnv(ctx, g, t, func(e *persist.Env) error {
		err := e.ApplyToUpper(ctx, sandbox, func(upper string) error {
			var err error
			sr, err = vm.MaterialiseKeeping(f, upper, vm.DefaultStreamLimits, keep)
			return err
		})
		if err != nil {
			return err
		}
		// Applied, still under the lock: killed from here on, this run is
		// no orphan whose scratch disk a later command applies again over
		// what was written since.
		defer os.WriteFile(filepath.Join(dir, container.VMAppliedFile), nil, 0o600)
		if len(sr.Refused) == 0 {
			return nil
		}
		// Refused entries go to the recovery area with the session's close.
		if err := e.KeepVMRefused(ctx, sandbox, sandboxrun.VMRefusals(sr.Refused), keep); err != nil {
			t.warnf("the VM's refused changes are not kept for recovery: %v", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range sr.Refused {
		t.warnf("%s", sandboxrun.RefusedWarning(r))
	}
	if !out.Verified || !sr.Complete {
		why := streamShortBy(out, sr)
		t.warnf("the VM's changes stream was incomplete (%s): what arrived was applied; the scratch disk is kept in %s", why, dir)
	}
	return nil
}

// vmSignals forwards spillway's signals to CMD in the guest and, with a
// terminal, puts it in raw mode and forwards its size.
func vmSignals(t *term, tty bool, req *proto.Request) (restore func(), sigs chan int, winch chan [2]uint16) {
	sigs, winch = make(chan int, 8), make(chan [2]uint16, 4)
	c := make(chan os.Signal, 8)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH)
	var state *xterm.State
	var fd int
	if f, ok := t.in.(*os.File); tty && ok {
		fd = int(f.Fd())
		if cols, rows, err := xterm.GetSize(fd); err == nil {
			req.Rows, req.Cols = uint16(rows), uint16(cols)
		}
		state, _ = xterm.MakeRaw(fd)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-c:
				if s == syscall.SIGWINCH {
					if cols, rows, err := xterm.GetSize(fd); tty && err == nil {
						select {
						case winch <- [2]uint16{uint16(rows), uint16(cols)}:
						default:
						}
					}
					continue
				}
				select {
				case sigs <- int(s.(syscall.Signal)):
				default:
				}
			}
		}
	}()
	return func() {
		signal.Stop(c)
		close(done)
		if state != nil {
			xterm.Restore(fd, state)
		}
	}, sigs, winch
}

// writeVMTimings appends one JSON line of a run's phases to the file
// $SPILLWAY_VM_TIMINGS names, for bench/vmbench.
func writeVMTimings(start, applyStart time.Time, out *vm.Outcome) {
	p := os.Getenv("SPILLWAY_VM_TIMINGS")
	if p == "" || out == nil || out.Result == nil {
		return
	}
	r := out.Result
	ms := func(a, b time.Time) float64 {
		if a.IsZero() || b.IsZero() {
			return 0
		}
		return float64(b.Sub(a).Microseconds()) / 1000
	}
	line, _ := json.Marshal(map[string]any{
		"setup_ms": ms(start, r.Times.QEMU), "boot_ms": ms(r.Times.QEMU, r.Times.Ready), "cmd_ms": ms(r.Times.Ready, r.Times.Exit),
		"stream_ms": ms(r.Times.Exit, r.Times.Streamed), "poweroff_ms": ms(r.Times.Exit, r.Times.Off), "apply_ms": ms(applyStart, time.Now()),
		"total_ms": ms(start, time.Now()), "disk_ms": float64(out.DiskTime.Microseconds()) / 1000,
		"guest_init_s": r.GuestInit, "guest_ready_s": r.GuestReady, "qemu_maxrss_kib": r.QEMUMaxRSS, "qemu_cpu_ms": float64(r.QEMUCPU.Microseconds()) / 1000, "virtiofsd_maxrss_kib": r.VirtiofsdMaxRSS, "stream_bytes": r.StreamBytes, "rescued": out.Rescued,
	})
	f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	f.Write(append(line, '\n'))
}

func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}

// vmCommand is `spillway vm`: setting up the guest kernel and initramfs.
func vmCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:  "vm",
		Usage: "disposable VMs: set up the guest kernel and initramfs",
		Subcommands: []*cli.Command{{
			Name:      "setup",
			Usage:     "find the guest kernel, build the initramfs, probe acceleration; prints what VMs will use",
			ArgsUsage: "[--kernel VMLINUZ --modules DIR] [--accel auto|kvm|tcg]",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "kernel", Usage: "the guest kernel `VMLINUZ` (with --modules)"},
				&cli.StringFlag{Name: "modules", Usage: "its modules `DIR` (lib/modules/VERSION)"},
				&cli.StringFlag{Name: "init", Usage: "the guest init binary `PATH` (default: spillway-vminit next to spillway)"},
				&cli.StringFlag{Name: "accel", Usage: "auto, kvm or tcg", Value: vm.AccelAuto},
				&cli.BoolFlag{Name: "fetch", Usage: "download linux-image-cloud-amd64 into the state directory when no kernel is found"},
				jsonFlag(t),
			},
			Action: func(c *cli.Context) error {
				if err := needArgs(c, 0, "[--kernel VMLINUZ --modules DIR] [--accel auto|kvm|tcg]"); err != nil {
					return err
				}
				o := vm.SetupOptions{Kernel: c.String("kernel"), Modules: c.String("modules"), Init: c.String("init"), Accel: c.String("accel"), Fetch: c.Bool("fetch")}
				return runVMSetup(c.Context, o, globals(c), t)
			},
		}},
	}
}

// runVMSetup is `vm setup`.
func runVMSetup(ctx context.Context, o vm.SetupOptions, g globalOptions, t *term) error {
	switch o.Accel {
	case vm.AccelAuto, vm.AccelKVM, vm.AccelTCG:
	default:
		return usageError("unknown --accel %q: use auto, kvm or tcg", o.Accel)
	}
	if (o.Kernel == "") != (o.Modules == "") {
		return usageError("--kernel and --modules go together")
	}
	var cfg *vm.Config
	err := withEnv(ctx, g, t, func(e *persist.Env) error {
		var err error
		cfg, err = vm.Setup(ctx, e.StateRoot(), o, func(s string) { t.warnf("%s", s) })
		return err
	})
	if err != nil {
		return err
	}
	if t.json {
		return t.printJSON(cfg)
	}
	fmt.Fprintf(t.out, "kernel     %s (%s, %s)\n", cfg.Kernel.Image, cfg.Kernel.Version, cfg.Kernel.Source)
	if cfg.Vmlinux != "" {
		fmt.Fprintf(t.out, "boots      %s (PVH entry)\n", cfg.Vmlinux)
	}
	fmt.Fprintf(t.out, "modules    %s: %s\n", cfg.Kernel.Modules, strings.Join(cfg.Modules, " "))
	fmt.Fprintf(t.out, "initramfs  %s (init %s)\n", cfg.Initramfs, cfg.Init)
	fmt.Fprintf(t.out, "qemu       %s\n", cfg.QEMU)
	if cfg.Virtiofsd != "" {
		fmt.Fprintf(t.out, "virtiofsd  %s\n", cfg.Virtiofsd)
	}
	fmt.Fprintf(t.out, "accel      %s (%s)\n", cfg.Accel, cfg.AccelReason)
	return nil
}

// diffSandbox is diff's walk: the sandbox's changes and, while a VM without
// a shared file system runs on it, the guest's own, which its init lists
// over the control channel.
func diffSandbox(ctx context.Context, e *persist.Env, t *term, sandbox string, fn func(persist.DiffEntry) error) error {
	book := &container.Book{Dir: e.RunDir()}
	live, err := book.Live(ctx, sandbox)
	if err != nil {
		return err
	}
	orphans, err := book.Orphans(sandbox)
	if err != nil {
		return err
	}
	for _, r := range orphans {
		t.warnf("the VM run of %s by pid %d ended before its changes were applied: they are not shown; the next close or run applies them", sandbox, r.PID)
	}
	for _, r := range live {
		if r.VM == nil || r.VM.Upper == "" {
			continue
		}
		ans, err := vm.QueryDiff(ctx, r.VM.Dir)
		if errors.Is(err, vm.ErrNotRunning) {
			t.warnf("the VM on %s (pid %d) is starting or ending: its changes are not shown yet", sandbox, r.PID)
			break
		}
		if err != nil {
			return fmt.Errorf("ask the VM on %s for its changes: %w", sandbox, err)
		}
		if ans.Truncated {
			t.warnf("the VM on %s listed only its first %s", sandbox, count(len(ans.Changes), "change"))
		}
		guest := make([]persist.GuestChange, len(ans.Changes))
		for i, c := range ans.Changes {
			guest[i] = persist.GuestChange{Kind: c.Kind, Path: c.Path, Type: c.Type, Size: c.Size, Mode: c.Mode, UID: c.UID, GID: c.GID}
		}
		return e.DiffWithGuest(ctx, sandbox, guest, fn)
	}
	return e.Diff(ctx, sandbox, fn)
}
