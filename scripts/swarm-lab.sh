#!/usr/bin/env bash
# A real 3-node Docker Swarm on one machine, for funcd's swarm driver tests and demos.
#
#   scripts/swarm-lab.sh up        build it (idempotent: a lab that is up is left alone), print DOCKER_HOST=… FUNCD_REGISTRY=…
#   scripts/swarm-lab.sh down      tear it down: every node process, namespace, veth, mount and file it made
#   scripts/swarm-lab.sh status    the nodes as the manager sees them
#   scripts/swarm-lab.sh env       print the lines `up` printed (for `eval $(scripts/swarm-lab.sh env)`)
#   scripts/swarm-lab.sh kill-node N / start-node N   lose node N (every process of it, SIGKILL) / bring it back
#
# Shape (facts measured on this kind of machine are in the repo's notes; the short version):
#   - a bridge in a network namespace of its own (fsl-br): on the host, br_netfilter and the host engine's
#     FORWARD DROP would eat node-to-node traffic;
#   - three node namespaces (fsl-n1..3), each joined to the bridge by a veth pair, 10.213.0.11-13/24, no
#     default route, IPv6 off; one host leg (fsl-host, 10.213.0.1/24) so funcd on the host reaches the nodes;
#   - each node is one dockerd in its own network, mount, UTS (hostname) and PID namespace, with its own
#     data root, exec root, socket, containerd and cgroup parent; a private tmpfs over the paths dockerd
#     shares despite its flags (/etc/docker holds key.json = the engine's identity, /var/lib/docker,
#     /run/containerd, /run/docker/plugins); the cgroup hierarchies mounted again (ip netns exec drops them);
#   - node 1 is the manager (dispatcher heartbeat 1 s, so a lost node is noticed in seconds), 2 and 3 workers;
#   - Debian's docker-registry (the CNCF distribution registry) on the host leg, 10.213.0.1:5000, listed as
#     an insecure registry by every engine; node:20-slim and python:3.11-slim from the host engine pushed to it.
# Nothing outside those namespaces changes: no host iptables rule, no global sysctl, the host engine untouched
# (only `docker save` reads from it). The routing mesh and VIPs need IPVS, which this kernel lacks: use
# endpoint-mode dnsrr with host-mode published ports (what funcd's swarm driver does).
#
# Needs root, iproute2, util-linux (unshare), docker.io (dockerd, docker-init), docker-registry.
set -euo pipefail

STATE=${FUNCD_SWARM_LAB_STATE:-/run/funcd-swarm-lab}  # sockets, exec roots, pids, the env file (tmpfs)
DATA=${FUNCD_SWARM_LAB_DATA:-/var/lib/funcd-swarm-lab} # engine data roots and the registry's storage (disk)
NET=10.213.0
HOST_ADDR=$NET.1
REGISTRY=$HOST_ADDR:5000
NODES=(1 2 3)
BASE_IMAGES=(node:20-slim python:3.11-slim)
SELF=$(readlink -f "$0")

log() { echo "swarm-lab: $*" >&2; }
die() {
  echo "swarm-lab: $*" >&2
  exit 1
}
node_addr() { echo "$NET.$((10 + $1))"; }
node_sock() { echo "$STATE/n$1/docker.sock"; }
mgr() { docker -H "unix://$(node_sock 1)" "$@"; }
ndocker() {
  local n=$1
  shift
  docker -H "unix://$(node_sock "$n")" "$@"
}
node_pid() { # host pid of the node's PID 1 (its init), empty when not running
  local f=$STATE/n$1/init.pid p
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
  return 0
}
env_lines() {
  echo "DOCKER_HOST=unix://$(node_sock 1)"
  echo "FUNCD_REGISTRY=$REGISTRY"
  echo "FUNCD_SWARM_LAB=$STATE"
}

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (it creates network namespaces and engines)"; }
need_tools() {
  local missing=()
  command -v ip >/dev/null || missing+=(iproute2)
  command -v unshare >/dev/null || missing+=(util-linux)
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker-init >/dev/null || missing+=(docker.io)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  [ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (apt-get install -y ${missing[*]})"
}

# --- network -----------------------------------------------------------------------------------------
net_up() {
  ip netns list | grep -qw fsl-br || ip netns add fsl-br
  ip -n fsl-br link show br0 >/dev/null 2>&1 || {
    ip -n fsl-br link add br0 type bridge
    ip -n fsl-br link set lo up
    ip -n fsl-br link set br0 up
  }
  if ! ip link show fsl-host >/dev/null 2>&1; then
    ip link add fsl-host type veth peer name v-host netns fsl-br
    sysctl -qw net.ipv6.conf.fsl-host.disable_ipv6=1 || true
    ip addr add "$HOST_ADDR/24" dev fsl-host
    ip link set fsl-host up
    ip -n fsl-br link set v-host master br0 up
  fi
  local n
  for n in "${NODES[@]}"; do
    ip netns list | grep -qw "fsl-n$n" || ip netns add "fsl-n$n"
    if ! ip -n "fsl-n$n" link show eth0 >/dev/null 2>&1; then
      ip link add "fsl-v$n" type veth peer name eth0 netns "fsl-n$n"
      ip link set "fsl-v$n" netns fsl-br
      ip -n fsl-br link set "fsl-v$n" master br0 up
      ip netns exec "fsl-n$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
      ip -n "fsl-n$n" addr add "$(node_addr "$n")/24" dev eth0
      ip -n "fsl-n$n" link set lo up
      ip -n "fsl-n$n" link set eth0 up
    fi
  done
}

net_down() {
  local n
  for n in "${NODES[@]}"; do ip netns del "fsl-n$n" 2>/dev/null || true; done
  ip link del fsl-host 2>/dev/null || true
  ip netns del fsl-br 2>/dev/null || true
}

# --- registry ----------------------------------------------------------------------------------------
registry_up() {
  local pidf=$STATE/registry.pid
  if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then return 0; fi
  mkdir -p "$DATA/registry"
  cat >"$STATE/registry.yml" <<EOF
version: 0.1
log: { level: warn }
storage:
  filesystem: { rootdirectory: $DATA/registry }
  delete: { enabled: true }
http:
  addr: $REGISTRY
EOF
  setsid docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 </dev/null &
  echo $! >"$pidf"
  local _
  for _ in $(seq 1 50); do
    curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  tail -5 "$STATE/registry.log" >&2
  die "the registry did not answer at http://$REGISTRY/v2/"
}

# --- nodes -------------------------------------------------------------------------------------------
# Runs inside the node's new mount/UTS/PID namespaces (called by `start-node` through unshare), as PID 1's child.
node_init() {
  local n=$1
  hostname "lab-node-$n"
  mount --make-rprivate /
  # ip netns exec remounted /sys for the namespace: the cgroup hierarchies are gone. Mount them again.
  mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
  local c
  for c in cpu cpuacct cpuset memory devices freezer blkio pids net_cls net_prio perf_event hugetlb rdma; do
    grep -qw "$c" /proc/cgroups || continue
    awk -v c="$c" '$1 == c && $4 == 1 { f = 1 } END { exit !f }' /proc/cgroups || continue
    mkdir -p "/sys/fs/cgroup/$c"
    mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" 2>/dev/null || rmdir "/sys/fs/cgroup/$c"
  done
  mkdir -p /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd || true
  # Paths every dockerd uses whatever its flags say: private per node.
  for c in /etc/docker /var/lib/docker /run/containerd /run/docker/plugins; do
    mkdir -p "$c"
    mount -t tmpfs -o mode=711 "fsl-n$n" "$c"
  done
  mkdir -p "$STATE/n$n/exec" "$DATA/n$n"
  echo '{}' >"$STATE/n$n/daemon.json"
  exec dockerd \
    --config-file "$STATE/n$n/daemon.json" \
    --data-root "$DATA/n$n" \
    --exec-root "$STATE/n$n/exec" \
    --pidfile "$STATE/n$n/docker.pid" \
    -H "unix://$(node_sock "$n")" \
    --bip "10.$((220 + n)).0.1/24" \
    --default-address-pool "base=10.$((224 + n)).0.0/16,size=24" \
    --cgroup-parent "fsl-n$n" \
    --exec-opt native.cgroupdriver=cgroupfs \
    --insecure-registry "$REGISTRY" \
    --storage-driver overlay2 \
    --log-level warn
}

node_start() {
  local n=$1
  [ -n "$(node_pid "$n")" ] && return 0
  mkdir -p "$STATE/n$n"
  # What a killed node left: its socket, pid file (the engine refuses to start over one) and exec root —
  # containerd's pid file there names a pid of the dead PID namespace, which may be alive in the new one.
  rm -rf "$(node_sock "$n")" "$STATE/n$n/docker.pid" "$STATE/n$n/exec"
  # docker-init (tini) is the node's PID 1: it reaps and forwards signals; killing it (SIGKILL) takes every
  # process of the node with it, which is how a node is "lost" and how `down` ends a node.
  setsid ip netns exec "fsl-n$n" unshare --mount --uts --pid --fork --mount-proc \
    docker-init -s -- "$SELF" __node-init "$n" >"$STATE/n$n/dockerd.log" 2>&1 </dev/null &
  local launcher=$! pid="" _
  for _ in $(seq 1 50); do
    pid=$(pgrep -P "$launcher" 2>/dev/null | head -1 || true)
    [ -z "$pid" ] || break
    sleep 0.05
  done
  [ -n "$pid" ] || die "node $n did not start (see $STATE/n$n/dockerd.log)"
  echo "$pid" >"$STATE/n$n/init.pid"
}

node_wait() {
  local n=$1 _
  for _ in $(seq 1 150); do
    ndocker "$n" version >/dev/null 2>&1 && return 0
    [ -n "$(node_pid "$n")" ] || break
    sleep 0.1
  done
  tail -20 "$STATE/n$n/dockerd.log" >&2
  die "the engine of node $n did not answer on $(node_sock "$n")"
}

node_kill() {
  local n=$1 pid
  pid=$(node_pid "$n")
  [ -n "$pid" ] || return 0
  kill -KILL "$pid" 2>/dev/null || true
  local _
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  rm -f "$STATE/n$n/init.pid"
}

swarm_up() {
  local state
  state=$(mgr info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}')
  if [ "$state" != "active true" ]; then
    mgr swarm init --advertise-addr "$(node_addr 1)" --listen-addr "$(node_addr 1):2377" \
      --data-path-addr "$(node_addr 1)" --default-addr-pool 10.230.0.0/16 \
      --dispatcher-heartbeat 1s >/dev/null
  fi
  local token n
  token=$(mgr swarm join-token -q worker)
  for n in "${NODES[@]:1}"; do
    [ "$(ndocker "$n" info --format '{{.Swarm.LocalNodeState}}')" = active ] && continue
    ndocker "$n" swarm join --token "$token" --advertise-addr "$(node_addr "$n")" \
      --listen-addr "$(node_addr "$n"):2377" --data-path-addr "$(node_addr "$n")" "$(node_addr 1):2377" >/dev/null
  done
  # Ready = the manager sees every node Ready.
  local _
  for _ in $(seq 1 100); do
    [ "$(mgr node ls --format '{{.Status}}' | grep -c Ready)" -eq ${#NODES[@]} ] && return 0
    sleep 0.1
  done
  mgr node ls >&2
  die "not every node joined the swarm"
}

# Base images: from the host engine (seeded by scripts/seed-base-images.sh) into the manager, then the registry.
seed_image() {
  local img=$1
  if curl -fsS "http://$REGISTRY/v2/${img%%:*}/manifests/${img#*:}" \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' >/dev/null 2>&1 &&
    mgr image inspect "$img" >/dev/null 2>&1; then
    return 0
  fi
  docker image inspect "$img" >/dev/null 2>&1 ||
    die "base image $img is not on the host engine: run scripts/seed-base-images.sh first"
  docker save "$img" | mgr load -q >/dev/null
  mgr tag "$img" "$REGISTRY/$img"
  mgr push -q "$REGISTRY/$img" >/dev/null
}
seed_images() { # both at once: most of `up`'s time is here
  local img pids=() p
  for img in "${BASE_IMAGES[@]}"; do
    seed_image "$img" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || die "seeding the base images failed"; done
}

cmd_up() {
  need_root
  need_tools
  local t0=$SECONDS
  mkdir -p "$STATE" "$DATA"
  net_up
  registry_up
  log "network + registry: $((SECONDS - t0)) s"
  local n
  for n in "${NODES[@]}"; do node_start "$n"; done
  for n in "${NODES[@]}"; do node_wait "$n"; done
  log "engines: $((SECONDS - t0)) s"
  swarm_up
  log "swarm: $((SECONDS - t0)) s"
  seed_images
  env_lines >"$STATE/env"
  log "up in $((SECONDS - t0)) s: manager $(node_addr 1), workers $(node_addr 2) $(node_addr 3), registry $REGISTRY"
  env_lines
}

cmd_down() {
  need_root
  local n t0=$SECONDS
  for n in "${NODES[@]}"; do node_kill "$n"; done
  log "nodes killed: $((SECONDS - t0)) s"
  if [ -f "$STATE/registry.pid" ]; then
    kill "$(cat "$STATE/registry.pid")" 2>/dev/null || true
  fi
  # Anything still running from a node (a launcher that outlived its init) holds the namespace: end it.
  local pid
  for n in "${NODES[@]}"; do
    for pid in $(ip netns pids "fsl-n$n" 2>/dev/null || true); do kill -KILL "$pid" 2>/dev/null || true; done
  done
  net_down
  # Cgroups the nodes' engines made under their cgroup parents.
  local d
  for d in /sys/fs/cgroup/*/fsl-n[0-9]; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -rf "$STATE" "$DATA"
  log "down in $((SECONDS - t0)) s"
}

cmd_status() {
  if [ -z "$(node_pid 1)" ]; then
    echo "swarm-lab: down"
    return 3
  fi
  mgr node ls
  env_lines
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) [ -f "$STATE/env" ] && cat "$STATE/env" || die "the lab is down (scripts/swarm-lab.sh up)" ;;
kill-node)
  need_root
  node_kill "${2:?node number}"
  ;;
start-node)
  need_root
  node_start "${2:?node number}"
  node_wait "$2"
  ;;
__node-init) node_init "$2" ;;
*)
  echo "usage: $0 up|down|status|env|kill-node N|start-node N" >&2
  exit 2
  ;;
esac
