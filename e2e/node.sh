#!/usr/bin/env bash
# A real node for a running test environment: containerd + runc (Debian's) and the
# upstream kubelet (built by build.sh with E2E_WITH_NODE=1), registered with the
# environment's kube-apiserver, so pods really run. Images come from local files only
# (no registry): pause compiled from Kubernetes' own pause.c, busybox from Debian's
# busybox-static, and any `--image name=dir` given to `start`.
#
#   e2e/node.sh start DIR [--image REF=ROOTFS_DIR[:ENTRYPOINT]] [--binary REF=PATH]...
#                                    DIR is a directory `testenv.sh start` made; --binary
#                                    makes an image of one dynamically linked program:
#                                    PATH at /<name> with the shared libraries it links
#                                    (ldd), entrypoint ["/<name>"]
#   e2e/node.sh stop DIR             TERM, then KILL after 20 s; idempotent
#   e2e/node.sh import DIR REF ROOTFS_DIR [ENTRYPOINT]
#                                    one more local image, into the running node
#
# The node is named `node-<port>` after its kubelet port and written to DIR/env as
# TESTENV_NODE_NAME, its address as TESTENV_NODE_IP (pods reach servers of the host
# listening there); pods run on it with `spec.nodeName` (there is no scheduler).
# Everything of the node lives under DIR/node (its containerd root and state, the
# kubelet's root, logs in DIR/logs). Needs root (containerd and runc do).
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN_DIR=${E2E_BIN_DIR:-$E2E_DIR/.bin}

# The images every node has; tests refer to them by these names.
PAUSE_IMAGE=scaivault.local/pause:e2e
BUSYBOX_IMAGE=scaivault.local/busybox:e2e

die() { echo "e2e/node.sh: $*" >&2; exit 1; }
env_get() { sed -n "s/^$1=//p" "$2/env" | tail -n1; }

# A docker-archive image (what `ctr images import` reads) of ROOTFS as its one layer,
# deterministic for the same files: fixed owner and times, sorted names.
make_image() {
  local ref=$1 rootfs=$2 entrypoint=$3 out=$4 work
  work=$(mktemp -d)
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
    -C "$rootfs" -cf "$work/layer.tar" .
  local diff_id
  diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":%s,"Env":["PATH=/bin:/usr/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$entrypoint" "$diff_id" > "$work/config.json"
  printf '[{"Config":"config.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$ref" > "$work/manifest.json"
  tar --owner=0 --group=0 --mtime=@0 -C "$work" -cf "$out" manifest.json config.json layer.tar
  rm -rf "$work"
}

ctr_() { ctr --address "$1/node/containerd.sock" --namespace k8s.io "${@:2}"; }

import_image() {
  local dir=$1 ref=$2 rootfs=$3 entrypoint=${4:-'[]'} tar
  tar=$(mktemp --suffix=.tar)
  make_image "$ref" "$rootfs" "$entrypoint" "$tar"
  ctr_ "$dir" images import --no-unpack=false "$tar" >/dev/null
  rm -f "$tar"
}

# The root filesystem of an image holding only BINARY, what the dynamic loader needs for
# it at the paths ldd names (so no library of the host is needed at run time), and the
# host's CA bundle (as a distroless base has one: TLS clients load the system roots).
binary_rootfs() {
  local bin=$1 rootfs=$2 lib bundle=/etc/ssl/certs/ca-certificates.crt
  mkdir -p "$rootfs/tmp"
  cp "$bin" "$rootfs/$(basename "$bin")"
  if [[ -f "$bundle" ]]; then
    mkdir -p "$rootfs/etc/ssl/certs"
    cp -L "$bundle" "$rootfs$bundle"
  fi
  for lib in $(ldd "$bin" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$rootfs/$(dirname "$lib")"
    cp -L "$lib" "$rootfs/$lib"
  done
}

import_binary() {
  local dir=$1 ref=$2 bin=$3 rootfs
  [[ -x "$bin" ]] || die "--binary $ref=$bin: not an executable"
  rootfs=$(mktemp -d)
  binary_rootfs "$bin" "$rootfs"
  import_image "$dir" "$ref" "$rootfs" "[\"/$(basename "$bin")\"]"
  rm -rf "$rootfs"
}

# pause and busybox, built once per bin dir (their inputs do not change between runs).
base_images() {
  local images="$BIN_DIR/node-images"
  mkdir -p "$images"
  if [[ ! -f "$images/pause.tar" ]]; then
    local src work
    src=$(cd "$E2E_DIR/testenv" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
    [[ -f "$src" ]] || die "no $src (run build.sh first: it downloads the kubernetes module)"
    work=$(mktemp -d)
    mkdir -p "$work/rootfs"
    gcc -Os -static -o "$work/rootfs/pause" "$src"
    strip "$work/rootfs/pause"
    make_image "$PAUSE_IMAGE" "$work/rootfs" '["/pause"]' "$images/pause.tar.tmp"
    mv "$images/pause.tar.tmp" "$images/pause.tar"
    rm -rf "$work"
  fi
  if [[ ! -f "$images/busybox.tar" ]]; then
    local work
    work=$(mktemp -d)
    mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp" "$work/rootfs/etc"
    cp /bin/busybox "$work/rootfs/bin/busybox"
    for applet in $("$work/rootfs/bin/busybox" --list); do
      [[ "$applet" == busybox ]] || ln -s busybox "$work/rootfs/bin/$applet"
    done
    echo 'root:x:0:0:root:/:/bin/sh' > "$work/rootfs/etc/passwd"
    echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >> "$work/rootfs/etc/passwd"
    make_image "$BUSYBOX_IMAGE" "$work/rootfs" '["/bin/sh"]' "$images/busybox.tar.tmp"
    mv "$images/busybox.tar.tmp" "$images/busybox.tar"
    rm -rf "$work"
  fi
}

write_configs() {
  local dir=$1 kubelet_port=$2 node_ip=$3
  local node=$dir/node
  mkdir -p "$node/containerd" "$node/kubelet" "$node/cni"
  cat > "$node/containerd.toml" <<EOF
version = 2
root = "$node/containerd/root"
state = "$node/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$node/containerd.sock"
[ttrpc]
  address = "$node/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$E2E_DIR/node-runc.sh"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni"
EOF
  # The kubelet reports a node Ready only once the runtime's pod network is: a bridge of
  # its own per node (name and /24 from the kubelet port), host-local addresses kept
  # under DIR. Tests run their pods with hostNetwork to reach loopback servers.
  local subnet="10.$(( 100 + kubelet_port / 256 % 100 )).$(( kubelet_port % 256 ))"
  cat > "$node/cni/10-scaivault.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "scaivault-$kubelet_port", "plugins": [
  {"type": "bridge", "bridge": "sv$kubelet_port", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$node/cni-state",
            "ranges": [[{"subnet": "$subnet.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "loopback"}]}
EOF
  cat > "$node/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 here (kubelet 1.35+ refuses it unless told), cgroupfs: no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
containerRuntimeEndpoint: unix://$node/containerd.sock
address: $node_ip
port: $kubelet_port
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$dir/pki/ca.crt"}
authorization: {mode: AlwaysAllow}
failSwapOn: false
localStorageCapacityIsolation: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1%", nodefs.available: "1%", imagefs.available: "1%"}
syncFrequency: 1s
fileCheckFrequency: 1s
nodeStatusUpdateFrequency: 2s
volumePluginDir: $node/kubelet/volume-plugins
serializeImagePulls: false
EOF
}

wait_for() { # seconds, description, command...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || return 1
    sleep 0.2
  done
  echo "e2e/node.sh: $what" >&2
}

node_ready() { # dir node
  local url token
  url=$(env_get TESTENV_APISERVER_URL "$1")
  token=$(cat "$1/pki/admin.token")
  curl -fsS --max-time 2 --cacert "$1/pki/ca.crt" -H "Authorization: Bearer $token" \
    "$url/api/v1/nodes/$2" |
    python3 -c 'import json,sys; c={x["type"]:x["status"] for x in json.load(sys.stdin)["status"]["conditions"]}; sys.exit(c.get("Ready")!="True")'
}

start() {
  local dir=$1
  shift
  [[ -f "$dir/env" ]] || die "$dir is not a running test environment (testenv.sh start DIR)"
  [[ $(id -u) == 0 ]] || die "needs root (containerd and runc)"
  for b in containerd containerd-shim-runc-v2 runc ctr; do
    command -v "$b" >/dev/null || die "$b is not installed (apt-get install containerd runc)"
  done
  [[ -x "$BIN_DIR/kubelet" ]] || die "no kubelet in $BIN_DIR: E2E_WITH_NODE=1 e2e/build.sh"
  base_images
  local kubelet_port
  kubelet_port=$("$BIN_DIR/testenv-tool" ports 1)
  local name=node-$kubelet_port
  # The kubelet refuses a loopback node IP, and the apiserver reaches the kubelet at the
  # node's IP (logs, exec): an interface of the node's own (a bridge without ports: no
  # dummy module here) with an address from
  # 198.18.0.0/15 (set aside for benchmarks, never routed) that nothing outside sees.
  local link=svn$kubelet_port node_ip
  node_ip="198.18.$(( kubelet_port / 256 )).$(( kubelet_port % 256 ))"
  ip link add "$link" type bridge
  printf 'TESTENV_NODE_LINK=%s\nTESTENV_NODE_BRIDGE=sv%s\n' "$link" "$kubelet_port" >> "$dir/env"
  ip addr add "$node_ip/32" dev "$link"
  ip link set "$link" up
  write_configs "$dir" "$kubelet_port" "$node_ip"
  mkdir -p "$dir/logs"
  containerd --config "$dir/node/containerd.toml" > "$dir/logs/containerd.log" 2>&1 &
  echo "TESTENV_CONTAINERD_PID=$!" >> "$dir/env"
  wait_for 30 "containerd is up" ctr_ "$dir" version ||
    { tail -n 30 "$dir/logs/containerd.log" >&2; die "containerd did not start"; }
  ctr_ "$dir" images import "$BIN_DIR/node-images/pause.tar" >/dev/null
  ctr_ "$dir" images import "$BIN_DIR/node-images/busybox.tar" >/dev/null
  while (( $# > 0 )); do
    local kind=$1 spec=${2:-}
    [[ -n "$spec" ]] || die "$kind needs REF=..."
    shift 2
    local ref=${spec%%=*} rest=${spec#*=}
    case "$kind" in
      --image) import_image "$dir" "$ref" "${rest%%:*}" "$( [[ "$rest" == *:* ]] && echo "${rest#*:}" || echo '[]')" ;;
      --binary) import_binary "$dir" "$ref" "$rest" ;;
      *) die "unknown option $kind (--image or --binary)" ;;
    esac
  done
  "$BIN_DIR/kubelet" \
    --config="$dir/node/kubelet.yaml" \
    --kubeconfig="$dir/kubeconfig" \
    --root-dir="$dir/node/kubelet" \
    --cert-dir="$dir/node/kubelet/pki" \
    --hostname-override="$name" \
    --node-ip="$node_ip" \
    --v=1 > "$dir/logs/kubelet.log" 2>&1 &
  echo "TESTENV_KUBELET_PID=$!" >> "$dir/env"
  printf 'TESTENV_NODE_NAME=%s\nTESTENV_NODE_IP=%s\n' "$name" "$node_ip" >> "$dir/env"
  wait_for 60 "node $name is Ready" node_ready "$dir" "$name" ||
    { tail -n 40 "$dir/logs/kubelet.log" >&2; die "node $name did not become Ready"; }
}

# Whether PID is this node's (its command line names DIR/node): a recycled pid is never
# hit. No pipe into `grep -q`: with pipefail, grep leaving at the first match can SIGPIPE
# `tr` and turn a match into a miss (testenv.sh learnt it on long command lines).
ours() {
  local cmdline
  [[ -n "$1" ]] || return 1
  cmdline=$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ "$cmdline" == *"$2/node/"* ]]
}

stop() {
  local dir=$1 pid
  [[ -f "$dir/env" ]] || return 0
  for key in TESTENV_KUBELET_PID TESTENV_CONTAINERD_PID; do
    pid=$(env_get "$key" "$dir")
    ours "$pid" "$dir" || continue
    kill -TERM "$pid" 2>/dev/null || true
  done
  # The pods' shims and containers outlive containerd: kill what runs from this root.
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*$dir/node" || true); do
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  done
  local deadline=$((SECONDS + 20))
  for key in TESTENV_KUBELET_PID TESTENV_CONTAINERD_PID; do
    pid=$(env_get "$key" "$dir")
    ours "$pid" "$dir" || continue
    while ours "$pid" "$dir" && (( SECONDS < deadline )); do sleep 0.2; done
    ours "$pid" "$dir" && kill -KILL "$pid" 2>/dev/null || true
  done
  local link
  for key in TESTENV_NODE_LINK TESTENV_NODE_BRIDGE; do
    link=$(env_get "$key" "$dir")
    [[ -z "$link" ]] || ip link del "$link" 2>/dev/null || true
  done
  # Mounts the kubelet and containerd made (emptyDirs, tokens, rootfs) go with the node.
  grep -o " $dir/node[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop "$2" ;;
  import) import_image "$2" "$3" "$4" "${5:-[]}" ;;
  *) sed -n '2,21p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
