#!/usr/bin/env bash
# Builds the real control plane (etcd, kube-apiserver, kube-controller-manager,
# kubectl) from the Go module proxy and caches the binaries outside the work
# tree, keyed by version. Prints the directory that holds them.
#
# hack/testenv.sh node also builds the node's Kubernetes binaries (kubelet,
# kube-proxy, kube-scheduler) into the same directory: only the node tests
# (tests/node, through hack/node.sh) use them; make demo and make bench do not.
#
# A warm cache costs nothing; a cold build of the control plane takes 12-20
# minutes on 2 cores, the node's three binaries some more.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.1}
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${KEYHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keyhook}
dir="$cache/testenv/$K8S_VERSION"
bins=(etcd kube-apiserver kube-controller-manager kubectl)
if [ "${1:-}" = node ]; then
  bins+=(kube-scheduler kubelet kube-proxy)
fi

have_all() {
  for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

if ! have_all; then
  mkdir -p "$dir"
  # Serialise concurrent builds (make test and make demo in two shells).
  exec 9>"$cache/.build.lock"
  flock 9
  if ! have_all; then
    cd "$root/hack/tools/testenv"
    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean"
    declare -A pkgs=(
      [etcd]=go.etcd.io/etcd/server/v3
      [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
      [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
      [kubectl]=k8s.io/kubernetes/cmd/kubectl
      [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
      [kubelet]=k8s.io/kubernetes/cmd/kubelet
      [kube-proxy]=k8s.io/kubernetes/cmd/kube-proxy
    )
    for b in "${bins[@]}"; do
      [ -x "$dir/$b" ] && continue
      echo "testenv: building $b $K8S_VERSION (cached in $dir)" >&2
      CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dir/$b.tmp" "${pkgs[$b]}"
      mv "$dir/$b.tmp" "$dir/$b"
    done
  fi
fi
echo "$dir"
