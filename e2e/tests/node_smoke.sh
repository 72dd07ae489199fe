#!/usr/bin/env bash
# Smoke test of the test node (e2e/node.sh): a kube-apiserver environment plus
# containerd + runc + kubelet, then pods that really run on it: a busybox Job-like pod
# that exits (Succeeded), a native sidecar (init container with restartPolicy: Always)
# beside an app that exits (the pod still completes), a memory-backed emptyDir shared
# between them, and a projected ServiceAccount token the kubelet mints. Stops all and
# checks that no process of the node is left. Needs root, curl and jq.
# Ends with "N passed, N failed".
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTENV="$E2E_DIR/testenv.sh"
NODE="$E2E_DIR/node.sh"
for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "node smoke: $tool is required" >&2; exit 1; }
done

PASSED=0 FAILED=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/scaivault-node.XXXXXX")
ENV="$WORK/env"
T0=$SECONDS

cleanup() {
  local rc=$?
  "$NODE" stop "$ENV" >/dev/null 2>&1 || true
  "$TESTENV" stop "$ENV" >/dev/null 2>&1 || true
  if (( rc != 0 || FAILED > 0 )); then
    echo "node smoke: FAILED; logs kept in $ENV/logs" >&2
    (( FAILED > 0 )) || FAILED=1
  else
    rm -rf "$WORK"
  fi
  echo "node smoke: $PASSED passed, $FAILED failed ($(( SECONDS - T0 ))s)"
  (( FAILED == 0 )) || exit 1
}
trap cleanup EXIT
trap 'exit 130' INT TERM
set -E
trap 'echo "  FAIL line $LINENO: $BASH_COMMAND" >&2' ERR

ok() { PASSED=$(( PASSED + 1 )); echo "  ok   $*"; }
fail() { FAILED=$(( FAILED + 1 )); echo "  FAIL $*" >&2; exit 1; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }
envval() { grep "^$1=" "$ENV/env" | tail -n1 | cut -d= -f2-; }

api() { # METHOD PATH [JSON]: as admin; body to stdout, status code in $WORK/code
  local method=$1 path=$2 body=${3:-}
  local args=(-sS --max-time 30 -X "$method" --cacert "$ENV/pki/ca.crt"
              -H "Authorization: Bearer $(cat "$ENV/pki/admin.token")"
              -o "$WORK/body" -w '%{http_code}')
  [[ -z "$body" ]] || args+=(-H "Content-Type: application/json" --data-binary "$body")
  curl "${args[@]}" "$(envval TESTENV_APISERVER_URL)$path" > "$WORK/code"
  cat "$WORK/body"
}
code() { cat "$WORK/code"; }

# wait_phase POD PHASE SECONDS: poll the pod until it reaches PHASE (or Failed).
wait_phase() {
  local deadline=$((SECONDS + $3)) phase=
  while (( SECONDS < deadline )); do
    phase=$(api GET "/api/v1/namespaces/$NS/pods/$1" | jq -r '.status.phase // empty')
    [[ "$phase" == "$2" ]] && return 0
    [[ "$phase" == Failed ]] && break
    sleep 0.5
  done
  echo "  pod $1 is '$phase', not $2:" >&2
  api GET "/api/v1/namespaces/$NS/pods/$1" | jq -c '.status' >&2
  return 1
}
logs() { api GET "/api/v1/namespaces/$NS/pods/$1/log?container=$2"; }

echo "node smoke: environment and node in $ENV"
"$TESTENV" start "$ENV" > "$WORK/start.log" 2>&1 || { cat "$WORK/start.log" >&2; fail "environment starts"; }
"$NODE" start "$ENV" > "$WORK/node.log" 2>&1 || { cat "$WORK/node.log" >&2; fail "node starts"; }
NODE_NAME=$(envval TESTENV_NODE_NAME)
ok "node $NODE_NAME is Ready ($(( SECONDS - T0 ))s)"

NS="node-$RANDOM$RANDOM"
api POST /api/v1/namespaces "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$NS\"}}" >/dev/null
api POST "/api/v1/namespaces/$NS/serviceaccounts" \
  "{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\",\"metadata\":{\"name\":\"app\"}}" >/dev/null
check "namespace and ServiceAccount (HTTP $(code))" [ "$(code)" = 201 ]

# --- a pod that runs and exits ---------------------------------------------------
api POST "/api/v1/namespaces/$NS/pods" "$(jq -nc --arg node "$NODE_NAME" '{
  apiVersion: "v1", kind: "Pod", metadata: {name: "hello"},
  spec: {nodeName: $node, restartPolicy: "Never", hostNetwork: true, serviceAccountName: "app", terminationGracePeriodSeconds: 1,
    containers: [{name: "app", image: "scaivault.local/busybox:e2e", imagePullPolicy: "Never",
      command: ["sh", "-c", "echo hello from the node"]}]}}')" >/dev/null
check "pod created (HTTP $(code))" [ "$(code)" = 201 ]
check "the pod ran to Succeeded" wait_phase hello Succeeded 60
check "its log is what it printed" [ "$(logs hello app)" = "hello from the node" ]

# --- a native sidecar beside an app that exits, sharing a memory emptyDir and a token ---
api POST "/api/v1/namespaces/$NS/pods" "$(jq -nc --arg node "$NODE_NAME" '{
  apiVersion: "v1", kind: "Pod", metadata: {name: "sidecar"},
  spec: {nodeName: $node, restartPolicy: "Never", hostNetwork: true, serviceAccountName: "app", terminationGracePeriodSeconds: 1,
    volumes: [{name: "files", emptyDir: {medium: "Memory"}},
      {name: "token", projected: {sources: [{serviceAccountToken: {path: "token", audience: "scaivault", expirationSeconds: 600}}]}}],
    initContainers: [{name: "agent", image: "scaivault.local/busybox:e2e", imagePullPolicy: "Never",
      restartPolicy: "Always",
      command: ["sh", "-c", "wc -c < /var/run/token/token > /files/token-bytes; echo rendered > /files/secret; exec sleep 3600"],
      startupProbe: {exec: {command: ["test", "-f", "/files/secret"]}, periodSeconds: 1},
      volumeMounts: [{name: "files", mountPath: "/files"}, {name: "token", mountPath: "/var/run/token", readOnly: true}]}],
    containers: [{name: "app", image: "scaivault.local/busybox:e2e", imagePullPolicy: "Never",
      command: ["sh", "-c", "cat /files/secret; cat /files/token-bytes; grep -c \" /files tmpfs \" /proc/mounts"],
      volumeMounts: [{name: "files", mountPath: "/files", readOnly: true}]}]}}')" >/dev/null
check "sidecar pod created (HTTP $(code))" [ "$(code)" = 201 ]
check "the pod completes although its sidecar never exits" wait_phase sidecar Succeeded 60
out=$(logs sidecar app)
check "the app started after the sidecar's first render: $(head -n1 <<<"$out")" [ "$(sed -n 1p <<<"$out")" = rendered ]
check "the kubelet mounted a projected token ($(sed -n 2p <<<"$out") bytes)" [ "$(sed -n 2p <<<"$out")" -gt 100 ]
check "the shared volume is memory-backed (tmpfs)" [ "$(sed -n 3p <<<"$out")" = 1 ]

# --- stop: nothing of the node is left ---------------------------------------------
"$NODE" stop "$ENV"
left=$(pgrep -f "$ENV/node" || true)
check "no process of the node is left${left:+: $left}" [ -z "$left" ]
