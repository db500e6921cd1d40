#!/usr/bin/env bash
# WireGuard's per-packet costs for every in-process library and every crypto backend
# GotaTun offers. One build holds one GotaTun backend (a Cargo feature), so this builds the
# costs bench twice: the default (aws-lc-rs, as GotaTun ships) with boringtun beside it,
# then ring. Criterion names them wg/boringtun/…, wg/gotatun-aws-lc-rs/… and
# wg/gotatun-ring/…; its reports are in target/criterion/.
#
# Usage: scripts/bench-wg-backends.sh [extra criterion filter, default: wg/]
set -euo pipefail
cd "$(dirname "$0")/.."
filter="${1:-wg/}"
echo "== GotaTun with aws-lc-rs (the default build), and boringtun"
cargo bench -p stackbench --bench costs -- "$filter"
echo "== GotaTun with ring"
cargo bench -p stackbench --bench costs --no-default-features --features gotatun-ring -- "${filter%/}/gotatun"
