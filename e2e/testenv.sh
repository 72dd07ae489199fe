#!/usr/bin/env bash
# A real Kubernetes control plane (etcd + kube-apiserver) for tests.
#
#   e2e/testenv.sh start DIR   build if needed, start etcd and kube-apiserver on free
#                              loopback ports, wait for /readyz, write DIR/kubeconfig
#                              and DIR/env (ports, pids, paths; KEY=value lines).
#                              Every start is a new cluster: fresh PKI, empty etcd.
#   e2e/testenv.sh stop DIR    stop its processes (TERM, then KILL after a grace period)
#   e2e/testenv.sh status DIR  exit 0 if all processes of DIR are running
#
# With E2E_WITH_CONTROLLERS=1, start also runs kube-controller-manager with the
# namespace, serviceaccount, garbage-collector and root-ca-certificate-publisher
# controllers (namespace deletion, default ServiceAccounts, ownerReference GC).
#
# All state (PKI, etcd data, logs) lives under DIR; environments in different
# directories run side by side. Binaries come from ${E2E_BIN_DIR:-e2e/.bin}.
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN_DIR=${E2E_BIN_DIR:-$E2E_DIR/.bin}
START_TIMEOUT=${TESTENV_START_TIMEOUT:-120}   # seconds for etcd + apiserver to become ready
STOP_TIMEOUT=${TESTENV_STOP_TIMEOUT:-20}      # seconds between TERM and KILL

die() { echo "testenv: $*" >&2; exit 1; }

# True if PID runs and its command line mentions this environment's DIR
# (guards against signalling a recycled pid). Zombies count as gone.
ours() {
  local pid=$1 dir=$2 state
  [[ -n "$pid" && -r /proc/$pid/cmdline ]] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ "$state" != Z && "$state" != X ]] || return 1
  # No pipe into `grep -q`: with pipefail, grep exiting at the first match can SIGPIPE
  # `tr` and turn a match into a failure (a long kube-apiserver command line did).
  local cmdline
  cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmdline" == *"$dir/"* ]]
}

# True while PID exists and is not a zombie.
running() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ "$state" != Z && "$state" != X ]]
}

# Once a pid is known to be ours, wait for it to be gone by pid alone: its command line
# can stop matching (or stop being readable) while it is still shutting down.
stop_pid() {
  local name=$1 pid=$2 dir=$3 i
  ours "$pid" "$dir" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < STOP_TIMEOUT * 10; i++ )); do
    running "$pid" || return 0
    sleep 0.1
  done
  echo "testenv: $name ($pid) ignored TERM for ${STOP_TIMEOUT}s, killing" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for (( i = 0; i < 50; i++ )); do running "$pid" || return 0; sleep 0.1; done
  die "$name ($pid) still running after KILL"
}

read_env() {  # sets TESTENV_* from DIR/env without sourcing arbitrary code
  local dir=$1 k v
  [[ -f "$dir/env" ]] || return 1
  while IFS='=' read -r k v; do
    if [[ "$k" =~ ^(TESTENV_[A-Z_]+|KUBECONFIG)$ ]]; then printf -v "$k" '%s' "$v"; fi
  done < "$dir/env"
}

stop_env() {
  local dir=$1
  TESTENV_APISERVER_PID='' TESTENV_ETCD_PID='' TESTENV_CONTROLLER_MANAGER_PID=''
  TESTENV_KUBELET_PID='' TESTENV_CONTAINERD_PID=''
  read_env "$dir" || { echo "testenv: no $dir/env, nothing to stop"; return 0; }
  # A node (e2e/node.sh) goes first, while the apiserver it reports to still runs.
  if [[ -n "${TESTENV_KUBELET_PID:-}${TESTENV_CONTAINERD_PID:-}" ]]; then
    bash "$E2E_DIR/node.sh" stop "$dir" || echo "testenv: stopping the node of $dir failed" >&2
  fi
  stop_pid kube-controller-manager "$TESTENV_CONTROLLER_MANAGER_PID" "$dir"
  stop_pid kube-apiserver "$TESTENV_APISERVER_PID" "$dir"
  stop_pid etcd "$TESTENV_ETCD_PID" "$dir"
  echo "testenv: stopped $dir"
}

# wait_ready NAME PID DIR LOG CMD...: poll CMD until it succeeds, PID dies, or timeout.
wait_ready() {
  local name=$1 pid=$2 dir=$3 log=$4; shift 4
  local deadline=$(( SECONDS + START_TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    # PID is the child this script just started: `running`, not `ours`, because between
    # fork and exec its command line is still this script's (seen on a loaded machine:
    # a healthy kube-apiserver reported as "exited" with an empty log).
    if ! running "$pid"; then
      echo "testenv: $name exited during startup; last lines of $log:" >&2
      tail -n 25 "$log" >&2
      return 1
    fi
    if (( SECONDS >= deadline )); then
      echo "testenv: $name not ready after ${START_TIMEOUT}s; last lines of $log:" >&2
      tail -n 25 "$log" >&2
      return 1
    fi
    sleep 0.2
  done
}

etcd_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$1/health" | grep -q '"health":"true"'; }
apiserver_ready() {
  curl -fsS --max-time 2 --cacert "$2/pki/ca.crt" -H "Authorization: Bearer $3" \
    "https://127.0.0.1:$1/readyz" | grep -qx ok
}
# The serviceaccount controller has run once it created default/default.
controllers_ready() {
  curl -fsS --max-time 2 --cacert "$2/pki/ca.crt" -H "Authorization: Bearer $3" \
    "https://127.0.0.1:$1/api/v1/namespaces/default/serviceaccounts/default" >/dev/null
}

# One attempt on freshly picked ports; returns 1 (after cleaning up) on failure,
# e.g. when another process grabbed a port between picking and binding.
start_once() {
  local dir=$1 token etcd_port peer_port api_port ports
  token=$(tr -d '\n' < "$dir/pki/admin.token")
  mapfile -t ports < <("$BIN_DIR/testenv-tool" ports 3)
  etcd_port=${ports[0]} peer_port=${ports[1]} api_port=${ports[2]}

  rm -rf "$dir/etcd"
  nohup "$BIN_DIR/etcd" \
    --name=testenv \
    --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="testenv=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync=true \
    --log-level=warn \
    </dev/null >"$dir/logs/etcd.log" 2>&1 &
  local etcd_pid=$!
  # Record pids as soon as they exist, so `stop` cleans up an interrupted start.
  echo "TESTENV_ETCD_PID=$etcd_pid" > "$dir/env"
  if ! wait_ready etcd "$etcd_pid" "$dir" "$dir/logs/etcd.log" etcd_healthy "$etcd_port"; then
    stop_pid etcd "$etcd_pid" "$dir"; return 1
  fi

  local issuer="https://127.0.0.1:$api_port"
  nohup "$BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --secure-port="$api_port" \
    --cert-dir="$dir/apiserver" \
    --tls-cert-file="$dir/pki/apiserver.crt" \
    --tls-private-key-file="$dir/pki/apiserver.key" \
    --client-ca-file="$dir/pki/ca.crt" \
    --kubelet-client-certificate="$dir/pki/kubelet-client.crt" \
    --kubelet-client-key="$dir/pki/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --token-auth-file="$dir/pki/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer="$issuer" \
    --service-account-key-file="$dir/pki/sa.pub" \
    --service-account-signing-key-file="$dir/pki/sa.key" \
    --api-audiences="$issuer" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --disable-admission-plugins=ServiceAccount \
    --allow-privileged=true \
    --profiling=false \
    </dev/null >"$dir/logs/kube-apiserver.log" 2>&1 &
  local api_pid=$!
  echo "TESTENV_APISERVER_PID=$api_pid" >> "$dir/env"
  if ! wait_ready kube-apiserver "$api_pid" "$dir" "$dir/logs/kube-apiserver.log" \
      apiserver_ready "$api_port" "$dir" "$token"; then
    stop_pid kube-apiserver "$api_pid" "$dir"; stop_pid etcd "$etcd_pid" "$dir"; return 1
  fi

  local ca_b64
  ca_b64=$(base64 -w0 < "$dir/pki/ca.crt")
  umask 077
  cat > "$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $ca_b64
users:
- name: admin
  user:
    token: $token
contexts:
- name: testenv
  context:
    cluster: testenv
    user: admin
current-context: testenv
KUBECONFIG

  local kcm_line=''
  if [[ "${E2E_WITH_CONTROLLERS:-0}" == 1 ]]; then
    nohup "$BIN_DIR/kube-controller-manager" \
      --kubeconfig="$dir/kubeconfig" \
      --controllers=namespace-controller,serviceaccount-controller,garbage-collector-controller,root-ca-certificate-publisher-controller \
      --root-ca-file="$dir/pki/ca.crt" \
      --leader-elect=false \
      --secure-port=0 \
      --use-service-account-credentials=false \
      </dev/null >"$dir/logs/kube-controller-manager.log" 2>&1 &
    local kcm_pid=$!
    echo "TESTENV_CONTROLLER_MANAGER_PID=$kcm_pid" >> "$dir/env"
    if ! wait_ready kube-controller-manager "$kcm_pid" "$dir" "$dir/logs/kube-controller-manager.log" \
        controllers_ready "$api_port" "$dir" "$token"; then
      stop_pid kube-controller-manager "$kcm_pid" "$dir"
      stop_pid kube-apiserver "$api_pid" "$dir"; stop_pid etcd "$etcd_pid" "$dir"; return 1
    fi
    kcm_line="TESTENV_CONTROLLER_MANAGER_PID=$kcm_pid"
  fi
  cat > "$dir/env.new" <<ENV
TESTENV_DIR=$dir
TESTENV_APISERVER_URL=https://127.0.0.1:$api_port
TESTENV_APISERVER_PORT=$api_port
TESTENV_APISERVER_PID=$api_pid
TESTENV_ETCD_URL=http://127.0.0.1:$etcd_port
TESTENV_ETCD_PORT=$etcd_port
TESTENV_ETCD_PEER_PORT=$peer_port
TESTENV_ETCD_PID=$etcd_pid
TESTENV_CA_FILE=$dir/pki/ca.crt
TESTENV_ADMIN_TOKEN_FILE=$dir/pki/admin.token
TESTENV_SA_ISSUER=$issuer
KUBECONFIG=$dir/kubeconfig
ENV
  [[ -z "$kcm_line" ]] || echo "$kcm_line" >> "$dir/env.new"
  mv "$dir/env.new" "$dir/env"
}

start_env() {
  local dir=$1 attempt
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if read_env "$dir" && { ours "${TESTENV_APISERVER_PID:-}" "$dir" || ours "${TESTENV_ETCD_PID:-}" "$dir" ||
                          ours "${TESTENV_CONTROLLER_MANAGER_PID:-}" "$dir"; }; then
    die "an environment is already running in $dir (stop it first)"
  fi
  rm -f "$dir/env" "$dir/kubeconfig"
  "$E2E_DIR/build.sh" >&2
  trap 'echo "testenv: interrupted, stopping" >&2; stop_env "$dir" >&2; exit 130' INT TERM
  mkdir -p "$dir/logs" "$dir/apiserver"
  "$BIN_DIR/testenv-tool" pki "$dir"
  for attempt in 1 2 3; do
    if start_once "$dir"; then
      echo "testenv: ready at $(grep '^TESTENV_APISERVER_URL=' "$dir/env" | cut -d= -f2-) (KUBECONFIG=$dir/kubeconfig)"
      return 0
    fi
    # Only a port taken between picking and binding is worth another try.
    grep -qs 'address already in use' "$dir"/logs/*.log ||
      die "could not start the environment in $dir; logs in $dir/logs"
    echo "testenv: start attempt $attempt lost a port race, retrying" >&2
  done
  die "could not start the environment in $dir; logs in $dir/logs"
}

case "${1:-}:${2:-}" in
  start:?*) start_env "$2" ;;
  stop:?*)
    [[ -d "$2" ]] || { echo "testenv: no directory $2, nothing to stop"; exit 0; }
    stop_env "$(cd "$2" && pwd)" ;;
  status:?*)
    d=$(cd "$2" && pwd) && read_env "$d" && ours "$TESTENV_APISERVER_PID" "$d" && ours "$TESTENV_ETCD_PID" "$d" &&
      { [[ -z "${TESTENV_CONTROLLER_MANAGER_PID:-}" ]] || ours "$TESTENV_CONTROLLER_MANAGER_PID" "$d"; } ;;
  *) echo "usage: $0 start|stop|status DIR" >&2; exit 2 ;;
esac
