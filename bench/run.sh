#!/usr/bin/env bash
# Entry point of the benchmark: installs missing tools, runs bench.py, and on exit
# (normal, error or signal) stops every server it started and removes its work dir.
# Settings come from the environment; see bench/README.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
bash "$HERE/install-deps.sh"

export BENCH_WORK=${BENCH_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/scaivault-bench.XXXXXX")}
mkdir -p "$BENCH_WORK"
child=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$child" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$child" 2>/dev/null || true
  fi
  # Servers run in their own process groups; their pids are listed in $BENCH_WORK/pids.
  if [ -f "$BENCH_WORK/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] || continue
      if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$pid" 2>/dev/null || true
      fi
    done < "$BENCH_WORK/pids"
  fi
  if [ "${BENCH_KEEP_WORK:-0}" = 1 ]; then
    echo "bench: work dir kept: $BENCH_WORK"
  else
    rm -rf "$BENCH_WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

"$PYTHON" "$HERE/bench.py" "$@" &
child=$!
wait "$child"
