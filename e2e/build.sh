#!/usr/bin/env bash
# Builds kube-apiserver, etcd and testenv-tool from e2e/testenv into
# ${E2E_BIN_DIR:-e2e/.bin}; with E2E_WITH_CONTROLLERS=1 also
# kube-controller-manager (about a third more build time, 105 MB), and with
# E2E_WITH_NODE=1 the kubelet of the test node (e2e/node.sh).
# A second run is a no-op while the inputs (go.mod, go.sum, *.go, this script,
# the Go version) are unchanged: their hash and the names of the binaries built
# from them are kept in $E2E_BIN_DIR/.testenv-stamp.
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR="$E2E_DIR/testenv"
BIN_DIR=${E2E_BIN_DIR:-$E2E_DIR/.bin}
mkdir -p "$BIN_DIR"
BIN_DIR=$(cd "$BIN_DIR" && pwd)

# Keep in step with the k8s.io/kubernetes version in testenv/go.mod.
K8S_VERSION=v1.37.2
K8S_MAJOR=1
K8S_MINOR=37
BINARIES=(kube-apiserver etcd testenv-tool)
[[ "${E2E_WITH_CONTROLLERS:-0}" == 1 ]] && BINARIES+=(kube-controller-manager)
[[ "${E2E_WITH_NODE:-0}" == 1 ]] && BINARIES+=(kubelet)

export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export CGO_ENABLED=0
export GOFLAGS=${GOFLAGS:--buildvcs=false}

command -v go >/dev/null || { echo "e2e/build.sh: go is not installed" >&2; exit 1; }

inputs_hash() {
  {
    go version
    echo "$K8S_VERSION $K8S_MAJOR $K8S_MINOR"
    cat "${BASH_SOURCE[0]}"
    cd "$SRC_DIR"
    find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
}

# One build at a time per bin dir (e.g. two `testenv.sh start` in parallel);
# a waiter then finds the stamp up to date.
if command -v flock >/dev/null; then
  exec 9>"$BIN_DIR/.testenv-lock"
  flock 9
fi

STAMP="$BIN_DIR/.testenv-stamp"
WANT=$(inputs_hash)
up_to_date=1 built=''
if [[ -f "$STAMP" && "$(head -n1 "$STAMP")" == "$WANT" ]]; then
  built=" $(sed -n 2p "$STAMP") "
else
  up_to_date=0
fi
for b in "${BINARIES[@]}"; do
  [[ "$built" == *" $b "* && -x "$BIN_DIR/$b" ]] || up_to_date=0
done
if (( up_to_date )); then
  echo "e2e: binaries in $BIN_DIR are up to date"
  exit 0
fi

# Fixed build date: identical inputs give identical binaries.
BUILD_DATE=2026-01-01T00:00:00Z
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$K8S_MAJOR -X $pkg.gitMinor=$K8S_MINOR"
  LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$BUILD_DATE"
done

echo "e2e: building ${BINARIES[*]} ($K8S_VERSION) into $BIN_DIR"
start=$(date +%s)
cd "$SRC_DIR"
# The module cache may be empty (fresh machine, CI cache wiped): fetch first.
nice -n 19 go mod download
fetched=$(date +%s)
rm -f "$STAMP"
# nice: the machine's cores are shared with the Rust builds.
nice -n 19 go build -trimpath -ldflags "$LDFLAGS" -o "$BIN_DIR/" "${BINARIES[@]/#/./cmd/}"
printf '%s\n%s\n' "$WANT" "${BINARIES[*]}" > "$STAMP"
echo "e2e: modules ready in $(( fetched - start ))s, built in $(( $(date +%s) - fetched ))s"
