#!/usr/bin/env bash
# The soak: runs scenarios/soak.toml (30 min, 16 nodes, churn and crashes), then checks
# that nothing of the run survives it (namespaces, interfaces, processes, sockets and key
# files under /run/stackbench) and prints how memory and descriptors moved.
#
#   scripts/soak.sh [SCENARIO] [extra stackbench run flags]
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-scenarios/soak.toml}
shift || true
cargo build --release -q
out=target/soak-runs
mkdir -p "$out"
before=$(ls "$out")
status=0
target/release/stackbench run "$scenario" --out "$out" "$@" || status=$?
run=$(comm -13 <(echo "$before") <(ls "$out") | tail -1)
[ -n "$run" ] || { echo "soak: the run wrote no folder (exit $status)"; exit 1; }
prefix="sb${run##*-}"
echo "soak: run $run (exit $status); looking for what it left (prefix $prefix)"
leaks=()
ip netns list | grep -q "$prefix" && leaks+=("namespaces: $(ip netns list | grep "$prefix" | tr '\n' ' ')")
ip -o link show | grep -q "$prefix" && leaks+=("interfaces: $(ip -o link show | grep "$prefix" | cut -d: -f2 | tr '\n' ' ')")
pgrep -af "/run/stackbench/$prefix" >/dev/null && leaks+=("processes: $(pgrep -af "/run/stackbench/$prefix" | tr '\n' ' ')")
[ -e "/run/stackbench/$prefix" ] && leaks+=("state: /run/stackbench/$prefix ($(ls /run/stackbench/$prefix | tr '\n' ' '))")
[ -e "/run/stackbench/$prefix.owner" ] && leaks+=("marker: /run/stackbench/$prefix.owner")
ss -xa 2>/dev/null | grep -q "$prefix" && leaks+=("sockets: $(ss -xa | grep "$prefix" | wc -l)")
sed -n '/### Memory and descriptors/,/^### [A-Z]/p' "$out/$run/summary.md" | grep -v '^### [A-Z][a-z]* [a-z]*$' || true
sed -n '/### Crashes/,/^| stack | rep | class | pairs/p' "$out/$run/summary.md" | head -20 || true
if [ ${#leaks[@]} -gt 0 ]; then
  printf 'soak: LEFT BEHIND: %s\n' "${leaks[@]}"
  exit 1
fi
echo "soak: nothing of the run survives it"
exit "$status"
