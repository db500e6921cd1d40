#!/usr/bin/env bash
# Installs what stackbench needs beyond Rust, on Debian or Ubuntu. Idempotent and quick when
# everything is present. Needs root (or sudo) only when something must be installed.
#
#   iproute2     ip, tc: namespaces, veths, rate limits
#   util-linux   unshare: rootless runs
#   wireguard-tools  wg(8), which configures kernel WireGuard for the quic-*+wg-kernel stacks
#                (they also need the kernel module; see scripts/setup-vm.sh where it is missing)
#   wireguard-go the wireguard-go daemon for the quic-*+wg-go stacks (without it they are
#                reported unavailable, with this install command): the newest the
#                distribution offers. Bookworm's own 0.0.20220316 predates wireguard-go's UDP
#                GSO/GRO and TUN offloads (2023); on bookworm this script adds
#                bookworm-backports to apt's sources for 0.0.20231211, and says so.
#   ethtool      turns off segmentation offloads where the userspace link emulator forwards
#   iputils-ping ping, the report's cross-check of the emulated round-trip time
#   fonts-dejavu-core  the font report plots are drawn with
#   libusrsctp2  usrsctp, the userspace SCTP the sctp stacks run on (loaded at run time;
#                without it they are reported unavailable, with this install command)
#   python3-venv a virtualenv with the PyPI `hdrhistogram` package, which the tests use to
#                check that results decode with an independent HdrHistogram implementation
#                (created in target/interop-venv)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ip >/dev/null && command -v tc >/dev/null || need_apt+=(iproute2)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v python3 >/dev/null || need_apt+=(python3)
command -v wireguard-go >/dev/null || need_apt+=(wireguard-go)
command -v wg >/dev/null || need_apt+=(wireguard-tools)
command -v ethtool >/dev/null || [ -x /usr/sbin/ethtool ] || [ -x /sbin/ethtool ] || need_apt+=(ethtool)
command -v ping >/dev/null || need_apt+=(iputils-ping)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
usrsctp_present() { /sbin/ldconfig -p 2>/dev/null | grep -q 'libusrsctp\.so\.2 '; }
usrsctp_present || need_apt+=(libusrsctp2)
venv=target/interop-venv
if [ ! -x "$venv/bin/python" ] && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  need_apt+=(python3-venv)
fi

if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else sudo="none"; fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$sudo" = none ]; then
    echo "setup.sh: missing packages; as root run: apt-get install -y ${need_apt[*]}" >&2; exit 1
  fi
  echo "setup.sh: installing ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The newest wireguard-go the distribution offers (bookworm: from bookworm-backports).
. scripts/apt-backports.sh
if ! ensure_backports "$sudo" "for a wireguard-go with offloads" | sed 's/^/setup.sh: /'; then
  echo "setup.sh: note: bookworm's wireguard-go predates its offloads; as root, add bookworm-backports to apt's sources and run: apt-get install -t bookworm-backports wireguard-go" >&2
fi
installed=$(dpkg-query -W -f '${Version}' wireguard-go 2>/dev/null || true)
newest=$(apt-cache madison wireguard-go 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' \
  | sort -V | tail -1)
if [ -n "$newest" ] && [ "$newest" != "$installed" ] \
   && dpkg --compare-versions "$newest" gt "${installed:-0}"; then
  if [ "$sudo" = none ]; then
    echo "setup.sh: note: wireguard-go $installed is older than $newest; as root run: apt-get install -y wireguard-go=$newest" >&2
  else
    echo "setup.sh: changed: wireguard-go ${installed:-none} -> $newest"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "wireguard-go=$newest" >/dev/null
  fi
fi

if ! "$venv/bin/python" -c 'import hdrh' 2>/dev/null; then
  echo "setup.sh: creating $venv with the hdrhistogram package"
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check hdrhistogram
fi
# Proof: run what is installed, not only look for it.
fail() { echo "setup.sh: $1" >&2; exit 1; }
ip -V >/dev/null 2>&1 || fail "ip does not run (iproute2)"
tc -V >/dev/null 2>&1 || fail "tc does not run (iproute2)"
wg --version >/dev/null 2>&1 || fail "wg does not run (wireguard-tools)"
ping -c 1 -W 2 127.0.0.1 >/dev/null 2>&1 || fail "ping 127.0.0.1 failed (iputils-ping)"
"$venv/bin/python" -c 'import hdrh' || fail "$venv cannot import hdrh"
# usrsctp must load and start, as the harness loads it.
python3 -c 'import ctypes; l = ctypes.CDLL("libusrsctp.so.2"); l.usrsctp_init_nothreads(0, None, None); assert l.usrsctp_finish() == 0' \
  || fail "libusrsctp.so.2 does not load and start (libusrsctp2)"
wg_go_version=$(wireguard-go --version 2>&1 | head -1) || fail "wireguard-go does not run"
if [ "$(id -u)" -eq 0 ] && [ -c /dev/net/tun ]; then
  # wireguard-go must start: a TUN of its own in a scratch namespace, and its UAPI socket
  # must answer.
  ns="sbsetup$$"
  ip netns add "$ns"
  trap 'ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null; ip netns del "$ns" 2>/dev/null; rm -f "/var/run/wireguard/${ns}.sock"' EXIT
  ip netns exec "$ns" env WG_PROCESS_FOREGROUND=1 wireguard-go "$ns" >/dev/null 2>&1 &
  for _ in $(seq 100); do
    [ -S "/var/run/wireguard/${ns}.sock" ] && break
    sleep 0.05
  done
  answer=$(printf 'get=1\n\n' | timeout 5 python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.stdin.buffer.read())
print(s.recv(4096).decode())' "/var/run/wireguard/${ns}.sock" 2>&1) || true
  echo "$answer" | grep -q '^errno=0' || fail "wireguard-go did not start and answer on its UAPI socket: $answer"
  proof="wireguard-go started and answered"
else
  proof="wireguard-go runs (starting it needs root and /dev/net/tun: not tried)"
fi
echo "setup.sh: ready: ip, tc, wg, ping, usrsctp and the hdrh venv run; $proof ($wg_go_version, package $(dpkg-query -W -f '${Version}' wireguard-go 2>/dev/null || echo unknown))"
