#!/usr/bin/env bash
# A/B regression check on this machine: builds two commits, runs a scenario with each in
# turn (A B A B ...: both meet the same machine state, and drift hits both alike), pools
# each side's repetitions and lets `stackbench compare` judge B against A. Exit 3 when B
# regressed, 0 otherwise, 1 when something could not be built or run.
#
#   scripts/ab-regression.sh [--pairs N] [--scenario FILE] BASE [HEAD]
#
# BASE and HEAD are git revisions (HEAD defaults to HEAD). CI passes the commit the
# submission started from; results land in target/ab/.
set -euo pipefail
cd "$(dirname "$0")/.."

pairs=3
scenario=scenarios/quick.toml
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) pairs="$2"; shift 2 ;;
    --scenario) scenario="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "ab-regression.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: scripts/ab-regression.sh [--pairs N] [--scenario FILE] BASE [HEAD]" >&2; exit 2; }
base=$(git rev-parse --verify "$1^{commit}") || { echo "ab-regression.sh: no commit $1" >&2; exit 2; }
head=$(git rev-parse --verify "${2:-HEAD}^{commit}") || { echo "ab-regression.sh: no commit ${2:-HEAD}" >&2; exit 2; }

out=target/ab
rm -rf "$out"
mkdir -p "$out/bin"
work=$(mktemp -d)
cleanup() {
  git worktree remove --force "$work/A" >/dev/null 2>&1 || true
  git worktree remove --force "$work/B" >/dev/null 2>&1 || true
  rm -rf "$work"
  git worktree prune
}
trap cleanup EXIT

# A side that is the clean working tree uses its own build. Any other is built from a
# worktree into a target folder of its own side (kept between calls, so a second call is
# quick): cargo names a workspace's artifacts by their path within the workspace, so two
# checkouts sharing one target folder would overwrite each other's.
for side in B A; do
  rev=$base; [ "$side" = B ] && rev=$head
  echo "ab-regression: building $side = $(git log -1 --format='%h %s' "$rev" | cut -c1-90)"
  if [ "$rev" = "$(git rev-parse HEAD)" ] && [ -z "$(git status --porcelain --untracked-files=no)" ]; then
    cargo build --release -q --bin stackbench
    cp target/release/stackbench "$out/bin/stackbench-$side"
    continue
  fi
  git worktree add --detach -q "$work/$side" "$rev"
  if [ ! -d "target/ab-target-$side/release" ] && [ -d target/release/deps ]; then
    # Start from this checkout's release build: the dependencies both sides share are not
    # built again (about 4 of 5 minutes on 2 cores); the workspace's own crates are, from
    # the worktree's sources, which are newer than anything copied.
    mkdir -p "target/ab-target-$side"
    cp -a target/release "target/ab-target-$side/"
  fi
  cargo build --release -q --manifest-path "$work/$side/Cargo.toml" \
    --target-dir "$PWD/target/ab-target-$side" --bin stackbench
  cp "target/ab-target-$side/release/stackbench" "$out/bin/stackbench-$side"
done

args_for() {
  # Older builds may not know --unchecked-links; the A/B compares builds, and the links'
  # self-check is not what is being compared.
  if "$1" run --help 2>/dev/null | grep -q -- --unchecked-links; then echo "--unchecked-links"; fi
}
for i in $(seq 1 "$pairs"); do
  for side in A B; do
    bin="$out/bin/stackbench-$side"
    echo "ab-regression: pair $i/$pairs, $side"
    # shellcheck disable=SC2046
    if ! "$bin" run "$scenario" --repetitions 1 --out "$out/$side" --no-progress $(args_for "$bin") \
        > "$out/$side-$i.log" 2>&1; then
      tail -20 "$out/$side-$i.log" >&2
      if [ "$side" = A ] && [ "$i" = 1 ]; then
        # The base is broken on this machine (e.g. a check it could not pass here): there
        # is nothing to compare with, which is not the new commit's fault.
        echo "ab-regression: NO VERDICT: the base commit $base cannot run $scenario on this machine (above)" >&2
        exit 0
      fi
      echo "ab-regression: $side could not run $scenario (above)" >&2
      exit 1
    fi
  done
done
list() { ls -d "$out/$1"/*/ | sort | paste -sd, -; }
# Each side's runs must come from its own commit's build.
for side in A B; do
  rev=$base; [ "$side" = B ] && rev=$head
  for env in "$out/$side"/*/env.json; do
    built=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stackbench_git_rev"])' "$env")
    case "$built" in
      "${rev:0:12}"*) ;;
      *) echo "ab-regression: $side's run $(dirname "$env") was made by build $built, not $rev" >&2; exit 1 ;;
    esac
  done
done
set +e
"$out/bin/stackbench-B" compare "$(list A)" "$(list B)"
code=$?
set -e
case $code in
  0) echo "ab-regression: B ($head) shows no regression against A ($base) over $pairs interleaved pairs" ;;
  3) echo "ab-regression: B ($head) REGRESSED against A ($base)" ;;
esac
exit $code
