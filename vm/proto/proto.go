// Package proto is what spillway's VM host side and its guest init agree on:
// the request file, the device names and the control channel's lines.
package proto

// Version is what the host and the init of an initramfs agree on; it goes
// up when either changes in a way the other must know (2: DIFF requests;
// 3: whiteouts marked by WhiteoutPAX).
const Version = 3

// WhiteoutPAX is the PAX record ("1") that marks a changes stream's
// ".wh.NAME" and ".wh..wh..opq" entries as the guest's deletions and
// opaque directories: without it, such a name is a file the guest's user
// made, never a deletion of a sibling or of a directory's content.
const WhiteoutPAX = "SPILLWAY.whiteout"

// InitMarker is in the init's binary (a string it uses), so that setup
// can tell an init of another protocol without running it on the host:
// an older init's deletions would read as files named .wh.NAME. It says
// Version (TestInitMarker).
const InitMarker = "spillway-vminit protocol 3"

// RequestPath is where the per-run cpio puts the request in the guest.
const RequestPath = "/spw/request.json"

// Port names of the virtio-serial channels (virtserialport name=).
const (
	PortCtl     = "spw.ctl"     // init's status lines; the host's WINCH lines
	PortStdin   = "spw.stdin"   // CMD's stdin
	PortStdout  = "spw.stdout"  // CMD's stdout (the terminal with TTY)
	PortStderr  = "spw.stderr"  // CMD's stderr
	PortChanges = "spw.changes" // the upper layer's changes as a tar
)

// Disk serials (virtio-blk serial=): lower disks are "lower0" (top) …
const (
	SerialScratch = "scratch"
	SerialLower   = "lower"
)

// VirtiofsTag is the virtiofs tag of the shared sandbox root.
const VirtiofsTag = "spwroot"

// Modes of a boot.
const (
	ModeRun    = "run"    // run CMD, then stream the changes (share none)
	ModeRescue = "rescue" // stream the scratch disk's changes only
	ModeProbe  = "probe"  // report READY and power off (acceleration probe)
)

// Shares: how the guest gets its root.
const (
	ShareNone     = "none"
	ShareVirtiofs = "virtiofs"
)

// Request is the run the guest init carries out.
type Request struct {
	Mode      string   `json:"mode"`
	Share     string   `json:"share"`
	Args      []string `json:"args,omitempty"`
	Env       []string `json:"env,omitempty"`
	Dir       string   `json:"dir,omitempty"`
	User      string   `json:"user,omitempty"` // UID[:GID]; "" is root
	TTY       bool     `json:"tty,omitempty"`
	Rows      uint16   `json:"rows,omitempty"`
	Cols      uint16   `json:"cols,omitempty"`
	Hostname  string   `json:"hostname,omitempty"`
	Lowers    int      `json:"lowers"`         // lower disks, lower0 on top
	TimeNanos int64    `json:"time_unix_nano"` // the host's clock when the request was made
	Heartbeat int      `json:"heartbeat_ms"`   // interval of init's HB lines
}

// Control lines, guest to host (one per line, space-separated fields).
const (
	MsgReady    = "READY"    // READY <uptime at init> <uptime now>: root mounted, about to start CMD
	MsgHB       = "HB"       // heartbeat from init
	MsgExit     = "EXIT"     // EXIT <status>: CMD's status (127/126 when it could not start)
	MsgError    = "ERROR"    // ERROR <text>: init failed before CMD ran (125)
	MsgNote     = "MSG"      // MSG <text>: why CMD could not start (before EXIT 127/126/125)
	MsgSignal   = "SIG"      // host to guest: SIG <n>: send signal n to CMD
	MsgStreamed = "STREAMED" // STREAMED <bytes> <crc32c>: the changes tar is complete (CRC-32C, hex)
	MsgWinch    = "WINCH"    // host to guest: WINCH <rows> <cols>
)

// The diff request of `spillway diff` while a VM without a shared file
// system runs: the host sends DIFF <id>; init answers with one CHG line per
// change of its upper layer, then DIFFEND <id> <n> [truncated].
const (
	MsgDiff    = "DIFF"    // host to guest: DIFF <id>
	MsgChange  = "CHG"     // CHG <id> <kind> <type> <size> <mode> <uid> <gid> <quoted path>
	MsgDiffEnd = "DIFFEND" // DIFFEND <id> <count> [truncated]
	// MaxDiffChanges bounds the changes one answer lists (init stops
	// there and says "truncated"; the host reads no more).
	MaxDiffChanges = 100000
	// MaxCtlLine bounds one control line as the host reads it: a CHG line
	// of a 4095-byte path quoted with \xNN escapes fits.
	MaxCtlLine = 20 << 10
)
