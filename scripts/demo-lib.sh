# Shared by scripts/demo.sh and scripts/demo-vm.sh (sourced, not run):
# root check, apt-get of what is missing, a fresh state directory removed
# at exit unless KEEP=1, and `step` to show each command before it runs.

# demo_need_root NAME: stop unless run as root.
demo_need_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "$1: run as root (sandboxes are overlay mounts)" >&2
		exit 1
	fi
}

# demo_install PKG...: apt-get install the packages given (none: nothing).
demo_install() {
	[ $# -gt 0 ] || return 0
	echo "installing $*"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# demo_workdir NAME: a fresh directory in $work, the state directory in
# it ($SPILLWAY_ROOT), both removed at exit unless KEEP=1.
demo_workdir() {
	work=$(mktemp -d "/var/tmp/$1.XXXXXX")
	export SPILLWAY_ROOT="$work/state"
	trap demo_cleanup EXIT
}

demo_cleanup() {
	if [ "${KEEP:-}" = 1 ]; then
		echo "state kept in $SPILLWAY_ROOT"
	else
		./spillway rm --force docs >/dev/null 2>&1 || true
		rm -rf "$work"
	fi
}

# step CMD...: print the command (bold on a terminal), then run it.
step() { if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then printf "\n\033[1m$ %s\033[0m\n" "$*"; else printf "\n$ %s\n" "$*"; fi; "$@"; }
