#!/usr/bin/env bash
# Builds (once) the real kube-apiserver the Kubernetes tests run against
# (internal/kubetest) and installs etcd from Debian. The binary is cached
# outside the repository, keyed by version:
#   $HOME/.cache/hallmark/kube-apiserver-$KUBE_VERSION
# k8s.io/kubernetes cannot be `go install`ed (its go.mod has replace
# directives), so a throwaway tools module imports the command and mirrors
# each of its replace lines, pinned to the matching staging version.
# Building takes 8-13 minutes on 2 busy cores (13 min measured for this
# branch, 146 MB binary). Under CI=true any failure is an
# error; the script never silently skips.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
STAGING_VERSION="v0${KUBE_VERSION#v1}"   # v1.34.4 -> v0.34.4
CACHE="${HALLMARK_CACHE:-$HOME/.cache/hallmark}"
OUT="$CACHE/kube-apiserver-$KUBE_VERSION"
GO="${GO:-go}"

if ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing Debian package etcd-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq etcd-server >/dev/null
    # The package starts a system etcd on 2379; the tests run their own.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
  else
    echo "deps: missing etcd — install it with: sudo apt-get install -y etcd-server" >&2
    exit 1
  fi
fi

if [ -x "$OUT" ]; then
  exit 0
fi

mkdir -p "$CACHE"
work="$(mktemp -d "$CACHE/kapi-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "deps: building kube-apiserver $KUBE_VERSION into $OUT (takes several minutes)"
cat > go.mod <<MOD
module kapi

go 1.25
MOD
cat > tools.go <<'SRC'
//go:build tools

package kapi

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
SRC
GOFLAGS=-mod=mod "$GO" get "k8s.io/kubernetes@$KUBE_VERSION"
modfile="$("$GO" env GOMODCACHE)/k8s.io/kubernetes@$KUBE_VERSION/go.mod"
# Mirror the replace block: every "k8s.io/x => ./staging/src/k8s.io/x" line
# becomes "k8s.io/x => k8s.io/x $STAGING_VERSION".
awk '/^replace \(/{r=1; next} r && /^\)/{r=0} r && NF>=3 {print $1}' "$modfile" |
  while read -r mod; do
    echo "replace $mod => $mod $STAGING_VERSION" >> go.mod
  done
GOFLAGS=-mod=mod "$GO" mod tidy
major="${KUBE_VERSION#v}"; major="${major%%.*}"
minor="${KUBE_VERSION#v*.}"; minor="${minor%%.*}"
ldflags="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=$major"
ldflags="$ldflags -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
CGO_ENABLED=0 "$GO" build -trimpath -ldflags "$ldflags" -o "$work/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
"$work/kube-apiserver" --version
mv "$work/kube-apiserver" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "deps: kube-apiserver ready at $OUT"
