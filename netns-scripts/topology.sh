#!/usr/bin/env bash
# stackbench topology: N node namespaces joined through one switch namespace.
#
#   topology.sh up   --prefix P --nodes N [--uplink RATE] [--burst SIZE] [--queue TIME]
#                    [--shape I:RATE:BURST:QUEUE ...] [--switch bridge|emulator]
#   topology.sh down --prefix P
#
# up makes namespaces P-sw and P-n0 .. P-n<N-1>. Node i has eth0 with 198.18.0.<i+1>/24
# (RFC 2544 benchmarking range) and a veth to port p<i> of the switch. With --uplink every
# node, with --shape node I alone, gets a TBF rate limit on its egress. --switch bridge (the
# default) joins the ports in bridge br0; --switch emulator leaves them apart for a link
# emulator to forward between (stackbench's), and turns off segmentation offloads on the
# nodes' eth0 so that frames read from a port are no larger than the MTU (needs ethtool).
# It records what it made in
# $STACKBENCH_STATE/P.netns; down removes exactly those namespaces (deleting a namespace
# deletes its veths and qdiscs). Both are idempotent. Needs CAP_NET_ADMIN (root, or a
# user+net+mount namespace with a private /run).
set -euo pipefail

usage() {
  sed -n '2,13p' "$0" 2>/dev/null | sed 's/^# \{0,1\}//' || true
  echo "usage: topology.sh up --prefix P --nodes N [--uplink RATE] [--burst SIZE] [--queue TIME]"
  echo "                        [--shape I:RATE:BURST:QUEUE ...] [--switch bridge|emulator]"
  echo "       topology.sh down --prefix P"
}
die() { echo "topology.sh: $*" >&2; exit 2; }

cmd=${1:-}; shift || true
case "$cmd" in
  up|down) ;;
  -h|--help|help) usage; exit 0 ;;
  *) usage >&2; die "first argument must be 'up' or 'down', got '${cmd}'" ;;
esac

prefix="" nodes="" uplink="" burst="32kb" queue="50ms" switch="bridge"
declare -A shape=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
    --nodes) nodes=${2:?--nodes needs a value}; shift 2 ;;
    --uplink) uplink=${2:?--uplink needs a value}; shift 2 ;;
    --burst) burst=${2:?--burst needs a value}; shift 2 ;;
    --queue) queue=${2:?--queue needs a value}; shift 2 ;;
    --shape)
      v=${2:?--shape needs I:RATE:BURST:QUEUE}
      [[ "$v" =~ ^([0-9]+):([^:]+):([^:]+):([^:]+)$ ]] || die "--shape must be I:RATE:BURST:QUEUE, got '$v'"
      shape[${BASH_REMATCH[1]}]="${BASH_REMATCH[2]} ${BASH_REMATCH[3]} ${BASH_REMATCH[4]}"; shift 2 ;;
    --switch)
      switch=${2:?--switch needs bridge or emulator}; shift 2
      [[ "$switch" =~ ^(bridge|emulator)$ ]] || die "--switch must be bridge or emulator, got '$switch'" ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ "$prefix" =~ ^[a-z][a-z0-9]{1,11}$ ]] || die "--prefix must be 2-12 lowercase letters/digits starting with a letter, got '$prefix'"
command -v ip >/dev/null || die "ip not found; install iproute2 (apt-get install iproute2)"

state_dir=${STACKBENCH_STATE:-/run/stackbench}
state="$state_dir/$prefix.netns"

ns_exists() { [ -e "/run/netns/$1" ]; }
ns_ensure() {
  ns_exists "$1" || ip netns add "$1"
  grep -qx "$1" "$state" 2>/dev/null || echo "$1" >>"$state"
}

if [ "$cmd" = down ]; then
  if [ -f "$state" ]; then
    list=$(cat "$state")
  else
    # No record (made by hand, or the record was lost): only names of exactly our shape.
    list=$(ip netns list | awk '{print $1}' | grep -E "^${prefix}-(sw|n[0-9]+)\$" || true)
  fi
  for ns in $list; do
    if ns_exists "$ns"; then
      # Processes still inside would keep the namespace alive after the name is gone.
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
      ip netns del "$ns"
    fi
  done
  rm -f "$state"
  exit 0
fi

[[ "$nodes" =~ ^[0-9]+$ ]] && [ "$nodes" -ge 2 ] && [ "$nodes" -le 200 ] || die "--nodes must be 2..200, got '$nodes'"
if [ -n "$uplink" ] || [ ${#shape[@]} -gt 0 ]; then
  command -v tc >/dev/null || die "tc not found; install iproute2 (apt-get install iproute2)"
fi
if [ "$switch" = emulator ]; then
  command -v ethtool >/dev/null || die "ethtool not found; install it (apt-get install ethtool)"
fi
mkdir -p "$state_dir"

sw="$prefix-sw"
ns_ensure "$sw"
ip -n "$sw" link set lo up
if [ "$switch" = bridge ]; then
  ip -n "$sw" link show br0 >/dev/null 2>&1 || ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
fi

# Node i's MAC: locally administered, the same in every run (each run has its own switch).
node_mac() { printf '02:53:42:00:%02x:%02x' $(($1 >> 8)) $(($1 & 255)); }

for ((i = 0; i < nodes; i++)); do
  ns="$prefix-n$i"
  ns_ensure "$ns"
  ip -n "$ns" link set lo up
  if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
    ip link add name eth0 netns "$ns" type veth peer name "p$i" netns "$sw"
  fi
  if [ "$switch" = bridge ]; then
    ip -n "$sw" link set "p$i" master br0 up
  else
    ip -n "$sw" link set "p$i" up
    # Frames read from the port must be no larger than the MTU: the kernel segments in
    # software, as a real NIC would in hardware.
    ip netns exec "$ns" ethtool -K eth0 tso off tx-udp-segmentation off >/dev/null
  fi
  ip -n "$ns" link set eth0 address "$(node_mac "$i")"
  ip -n "$ns" addr replace "198.18.0.$((i + 1))/24" dev eth0
  ip -n "$ns" link set eth0 up
  if [ -n "${shape[$i]:-}" ]; then
    read -r rate b q <<<"${shape[$i]}"
    ip netns exec "$ns" tc qdisc replace dev eth0 root tbf rate "$rate" burst "$b" latency "$q"
  elif [ -n "$uplink" ]; then
    ip netns exec "$ns" tc qdisc replace dev eth0 root tbf rate "$uplink" burst "$burst" latency "$queue"
  fi
done

# Every node knows every other node's MAC from the start: permanent neighbour entries. The
# kernel keeps one neighbour table for all namespaces, and its gc_thresh3 (1024 by default)
# caps the entries it learns by ARP host-wide: a 64-node full mesh needs 4 032, and past the
# cap sends fail with ENOBUFS (UdpSndbufErrors) until handshakes time out. Permanent entries
# are not counted against it, and no ARP storm lands in the measurement.
for ((i = 0; i < nodes; i++)); do
  for ((j = 0; j < nodes; j++)); do
    [ "$i" -eq "$j" ] || echo "neigh replace 198.18.0.$((j + 1)) lladdr $(node_mac "$j") dev eth0 nud permanent"
  done | ip -n "$prefix-n$i" -batch -
done
