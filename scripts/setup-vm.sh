#!/usr/bin/env bash
# Installs what `stackbench vm run` needs to boot a stock Debian kernel (which ships the
# WireGuard module) under qemu, for hosts whose own kernel lacks WireGuard. Needs root.
#
#   qemu-system-x86    the emulator (software emulation works without KVM)
#   linux-image-amd64  a kernel with WireGuard, in /boot, with its modules
#   wireguard-tools    wg(8), which configures the kernel interfaces
#   virtme-ng          boots that kernel over the host's filesystem (PyPI; in a virtualenv
#                      under /opt/stackbench-vm, linked as /usr/local/bin/vng)
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-vm.sh: run as root (it installs Debian packages)" >&2; exit 1
fi
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
ls /boot/vmlinuz-* >/dev/null 2>&1 || need+=(linux-image-amd64)
command -v wg >/dev/null || need+=(wireguard-tools)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup-vm.sh: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v vng >/dev/null; then
  venv=/opt/stackbench-vm
  echo "setup-vm.sh: installing virtme-ng into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check virtme-ng
  ln -sf "$venv/bin/vng" /usr/local/bin/vng
fi
echo "setup-vm.sh: ready ($(vng --version 2>&1 | head -1), kernels: $(ls /boot/vmlinuz-* | xargs -n1 basename | tr '\n' ' '))"
