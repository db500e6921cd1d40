#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/): the scenario parser, the results reader on corrupted
# folders, and the control protocol's decoder. cargo-fuzz on the stable toolchain with
# `-s none`: libFuzzer's coverage guidance without a sanitizer (ASan needs nightly); Rust's
# own checks (bounds, and with -a overflow and debug assertions) still abort on a bug.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 60 s each, every target
#
# Installs cargo-fuzz with cargo when it is missing. Findings land in
# fuzz/artifacts/<target>/ and the script exits non-zero; each becomes a regression input
# in fuzz/regressions/<target>/, which every run replays first.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(scenario results control)
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked --version 0.13.2
fi
cargo fuzz --version
cd fuzz
for t in "${targets[@]}"; do
  case "$t" in
    scenario) seeds=(../scenarios) ;;
    *) seeds=("seeds/$t") ;;
  esac
  mkdir -p "corpus/$t" "regressions/$t"
  echo "fuzz.sh: $t for ${secs}s"
  # Earlier findings first: each must now pass.
  if compgen -G "regressions/$t/*" >/dev/null; then
    cargo fuzz run -s none -O -a "$t" "regressions/$t" -- -runs=0 >/dev/null 2>&1 ||
      { echo "fuzz.sh: $t fails on a regression input in fuzz/regressions/$t/" >&2; exit 1; }
  fi
  log=$(mktemp)
  set +e
  cargo fuzz run -s none -O -a "$t" "corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  grep -E "^(#[0-9]+ +(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|SUMMARY|Test unit written|thread .* panicked)" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz.sh: $t found a crash (exit $status); the input is in fuzz/artifacts/$t/" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
done
