#!/usr/bin/env bash
# runc as the test node's containerd calls it (e2e/node.sh sets it as the runtime's
# BinaryName). This machine may raise a process's oom_score_adj but not lower it
# (no CAP_SYS_RESOURCE: "nsexec: failed to update /proc/self/oom_score_adj:
# Permission denied"), and the kubelet gives pod sandboxes -998 and Guaranteed
# containers -997. So before `create`/`run`, a bundle asking for less than this
# process's own score gets this process's score; everything else is runc's own.
set -euo pipefail
bundle=
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --bundle | -b) bundle=${args[i + 1]:-} ;;
    --bundle=*) bundle=${args[i]#--bundle=} ;;
  esac
done
if [[ -n "$bundle" && -f "$bundle/config.json" ]]; then
  floor=$(cat /proc/self/oom_score_adj)
  if jq -e --argjson floor "$floor" '(.process.oomScoreAdj // 0) < $floor' "$bundle/config.json" >/dev/null; then
    jq --argjson floor "$floor" '.process.oomScoreAdj = $floor' "$bundle/config.json" > "$bundle/config.json.tmp"
    mv "$bundle/config.json.tmp" "$bundle/config.json"
  fi
fi
exec runc "$@"
