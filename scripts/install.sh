#!/usr/bin/env bash
# Installs spillway, its man page and its shell completions.
# PREFIX defaults to /usr/local; DESTDIR is honoured for packaging.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
prefix="${PREFIX:-/usr/local}"
dest="${DESTDIR:-}"
install -d "$dest$prefix/bin" "$dest$prefix/share/man/man1" \
	"$dest$prefix/share/bash-completion/completions" \
	"$dest$prefix/share/zsh/site-functions" \
	"$dest$prefix/share/fish/vendor_completions.d"
go build -o "$dest$prefix/bin/spillway" ./cmd/spillway
# The guest init of `run --vm`, found next to spillway (docs/vm.md).
CGO_ENABLED=0 go build -o "$dest$prefix/bin/spillway-vminit" ./cmd/spillway-vminit
bin="$dest$prefix/bin/spillway"
install -m 0644 docs/man/spillway.1 "$dest$prefix/share/man/man1/spillway.1"
"$bin" completion bash >"$dest$prefix/share/bash-completion/completions/spillway"
"$bin" completion zsh >"$dest$prefix/share/zsh/site-functions/_spillway"
"$bin" completion fish >"$dest$prefix/share/fish/vendor_completions.d/spillway.fish"
echo "installed spillway, spillway-vminit, its man page and bash, zsh and fish completions under $dest$prefix"
