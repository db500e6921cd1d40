#!/usr/bin/env bash
# Cargo runner for test and bench binaries (see .cargo/config.toml). As root it runs the
# binary as is. As a normal user it runs it inside a new user + network + mount namespace
# with a private /run, where the namespace tests hold CAP_NET_ADMIN — so `cargo test` needs
# no sudo. Everything created there disappears with the namespace.
set -euo pipefail
if [ "$(id -u)" -eq 0 ] || [ -n "${STACKBENCH_ROOTLESS:-}" ]; then
  exec "$@"
fi
exec unshare --user --map-root-user --net --mount --propagation private \
  env STACKBENCH_ROOTLESS=1 sh -c 'mount -t tmpfs tmpfs /run && mkdir -p /run/netns && exec "$@"' sh "$@"
