#!/usr/bin/env bash
# Installs what `stackbench vm run` needs to boot a stock Debian kernel (which ships the
# WireGuard, netem and SCTP modules) under qemu, for hosts whose own kernel lacks them, and
# proves it by booting that kernel once. Needs root.
#
#   qemu-system-x86    the emulator (software emulation works without KVM)
#   linux-image-amd64  a kernel with WireGuard, in /boot, with its modules
#   wireguard-tools    wg(8), which configures the kernel interfaces
#   busybox-static     virtme-ng builds the VM's initramfs from a statically linked busybox
#   virtme-ng          boots that kernel over the host's filesystem (PyPI; in a virtualenv
#                      under /opt/stackbench-vm; vng and virtme-run, which vng runs by name,
#                      are linked into /usr/local/bin)
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-vm.sh: run as root (it installs Debian packages)" >&2; exit 1
fi
cd "$(dirname "$0")/.."
. scripts/apt-backports.sh
need=()
# qemu-system-x86 comes from the release an installed qemu-utils came from: bookworm-backports'
# qemu-utils (10.x) Breaks bookworm's qemu-system-common (7.2), and apt gives up on the pair.
qemu_from=()
if ! command -v qemu-system-x86_64 >/dev/null; then
  qemu_utils=$(dpkg-query -W -f '${Version}' qemu-utils 2>/dev/null || true)
  case "$qemu_utils" in
    *~bpo*)
      ensure_backports "" "because qemu-utils $qemu_utils came from there" | sed 's/^/setup-vm.sh: /'
      qemu_from=(-t "$(os_codename)-backports")
      echo "setup-vm.sh: qemu-utils $qemu_utils is a backport; qemu-system-x86 will come from $(os_codename)-backports too" ;;
  esac
  [ ${#qemu_from[@]} -gt 0 ] || need+=(qemu-system-x86)
fi
ls /boot/vmlinuz-* >/dev/null 2>&1 || need+=(linux-image-amd64)
command -v wg >/dev/null || need+=(wireguard-tools)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ] || [ ${#qemu_from[@]} -gt 0 ]; then apt-get update -qq; fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup-vm.sh: installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ${#qemu_from[@]} -gt 0 ]; then
  echo "setup-vm.sh: installing qemu-system-x86 ${qemu_from[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${qemu_from[@]}" qemu-system-x86 >/dev/null
fi
command -v qemu-system-x86_64 >/dev/null || { echo "setup-vm.sh: qemu-system-x86_64 is still missing after the install" >&2; exit 1; }
venv=/opt/stackbench-vm
if [ ! -x "$venv/bin/vng" ] || [ ! -x "$venv/bin/virtme-run" ]; then
  echo "setup-vm.sh: installing virtme-ng into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check virtme-ng
fi
for tool in "$venv"/bin/vng "$venv"/bin/virtme-*; do
  ln -sf "$tool" "/usr/local/bin/$(basename "$tool")"
done
hash -r

# Proof: boot the newest kernel and run `true` in it, as `stackbench vm run` will.
kernel=$(ls /boot/vmlinuz-* | sort -V | tail -1)
echo "setup-vm.sh: test boot of $kernel (software emulation; about 20 s)"
start=$(date +%s)
if ! out=$(timeout 180 vng --run "$kernel" --disable-kvm --memory 512M -- true 2>&1 | cat); then
  echo "setup-vm.sh: the test boot failed:" >&2
  echo "$out" | tail -20 >&2
  exit 1
fi
if echo "$out" | grep -qiE 'not found|could not be found'; then
  echo "setup-vm.sh: the test boot reported a problem:" >&2
  echo "$out" | tail -20 >&2
  exit 1
fi
echo "setup-vm.sh: ready: booted $(basename "$kernel") and ran a command in $(( $(date +%s) - start )) s ($(vng --version 2>&1 | head -1))"
