#!/usr/bin/env bash
# Prepares what the test bed's node needs and prints the directory of the
# containerd binaries:
#
# - kubelet, kube-proxy and kube-scheduler, built and cached beside the
#   control plane by hack/testenv.sh node;
# - containerd v2 (containerd, containerd-shim-runc-v2, ctr), built statically
#   from the Go module proxy by hack/tools/containerd and cached outside the
#   work tree, keyed by version (under a minute on 2 cores, once);
# - Debian's runc (with seccomp), containernetworking-plugins (bridge,
#   host-local, loopback) and nftables (kube-proxy's nftables mode), installed
#   with apt-get when missing. These machines are root; without root the
#   missing packages are named and the script fails.
set -euo pipefail

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${KEYHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keyhook}
dir="$cache/containerd/$CONTAINERD_VERSION"
bins=(containerd containerd-shim-runc-v2 ctr)

"$root/hack/testenv.sh" node >/dev/null

# Debian packages: the binary that proves each is installed.
declare -A debs=([runc]=/usr/sbin/runc [containernetworking-plugins]=/usr/lib/cni/bridge [nftables]=/usr/sbin/nft)
missing=()
for p in "${!debs[@]}"; do [ -x "${debs[$p]}" ] || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  mkdir -p "$cache"
  exec 8>"$cache/.apt.lock"
  flock 8
  missing=()
  for p in "${!debs[@]}"; do [ -x "${debs[$p]}" ] || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "node: missing Debian packages: ${missing[*]}; run as root or: apt-get install ${missing[*]}" >&2
      exit 1
    fi
    echo "node: installing ${missing[*]} (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
  exec 8>&-
fi

have_all() {
  for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done
}
if ! have_all; then
  mkdir -p "$dir"
  exec 9>"$cache/.build.lock"
  flock 9
  if ! have_all; then
    cd "$root/hack/tools/containerd"
    for b in "${bins[@]}"; do
      [ -x "$dir/$b" ] && continue
      echo "node: building $b $CONTAINERD_VERSION (cached in $dir)" >&2
      CGO_ENABLED=0 go build -trimpath -tags "no_btrfs no_devmapper no_zfs" \
        -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
        -o "$dir/$b.tmp" "github.com/containerd/containerd/v2/cmd/$b"
      mv "$dir/$b.tmp" "$dir/$b"
    done
  fi
fi
echo "$dir"
