#!/usr/bin/env bash
# Builds a real Vault server from the Go module proxy and caches the binary
# outside the work tree, keyed by version. Prints the binary's path.
#
# A cold build takes ~12 minutes on 2 cores and ~6 GB of memory, so it never
# runs in parallel with the control-plane build (hack/testenv.sh).
set -euo pipefail

VAULT_VERSION=${VAULT_VERSION:-v1.21.1}
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${KEYHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keyhook}
dir="$cache/vault/$VAULT_VERSION"

if [ ! -x "$dir/vault" ]; then
  mkdir -p "$dir"
  exec 9>"$cache/.build.lock"
  flock 9
  if [ ! -x "$dir/vault" ]; then
    echo "vault: building $VAULT_VERSION (cached in $dir)" >&2
    cd "$root/hack/tools/vault"
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/vault.tmp" github.com/hashicorp/vault
    mv "$dir/vault.tmp" "$dir/vault"
  fi
fi
echo "$dir/vault"
