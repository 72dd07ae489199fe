#!/usr/bin/env bash
# Installs the system packages the test suites call. Idempotent and quiet when all is present.
set -euo pipefail
need=()
# The test node (e2e/node.sh): containerd and runc run its pods, busybox-static is its
# app image, the CNI plugins its pod network, gcc builds its pause image.
for cmd_pkg in jq:jq curl:curl openssl:openssl containerd:containerd runc:runc \
  gcc:gcc busybox:busybox-static; do
  cmd=${cmd_pkg%%:*}; pkg=${cmd_pkg#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
# PostgreSQL: the server the PostgreSQL storage backend's tests start (testkit/src/postgres.rs).
# Debian's package puts initdb in /usr/lib/postgresql/<n>/bin, off PATH.
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && ! command -v initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
# moto_server: the S3-compatible server of the audit export's S3 test (api-server/tests/s3_moto.rs).
if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing: moto[server] (pip)"
  python3 -m pip install --quiet 'moto[server]'
fi
