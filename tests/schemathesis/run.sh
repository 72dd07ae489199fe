#!/usr/bin/env bash
# Runs schemathesis (every check, every phase incl. stateful) against a fresh dev server
# built from this tree, and fails on any failure. Used by `make test-schemathesis`.
#   run.sh <schemathesis binary> <scaivault-server binary> [extra st arguments...]
set -euo pipefail
st=$1 server=$2
shift 2
work=$(mktemp -d)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [[ ${KEEP:-} != 1 ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=svt_schemathesis_$(python3 -c 'import secrets; print(secrets.token_hex(16))')
# Rate limiting is part of the contract (429 is documented) but would make every later
# case of a run a 429; the run tests the operations themselves.
SCAIVAULT_DEV_ROOT_TOKEN=$token "$server" dev --listen "127.0.0.1:$port" --data-dir "$work/data" \
  --rate-limit-per-minute 0 --audit-export-dir "$work/exports" >"$work/server.log" 2>&1 &
pid=$!
base=http://127.0.0.1:$port
for _ in $(seq 1 300); do
  if curl -fsS "$base/v1/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then cat "$work/server.log"; exit 1; fi
  sleep 0.1
done
cd "$(dirname "$0")"
rc=0
"$st" --config-file schemathesis.toml run "$base/v1/openapi.json" --url "$base" \
  -H "Authorization: Bearer $token" --checks all \
  --phases examples,coverage,fuzzing,stateful --seed "${SCHEMATHESIS_SEED:-1}" "$@" || rc=$?
if [[ $rc != 0 ]]; then echo "server log: $work/server.log (kept with KEEP=1)"; fi
exit $rc
