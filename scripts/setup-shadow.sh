#!/usr/bin/env bash
# Builds and installs the Shadow network simulator from its sources, for `stackbench shadow`
# (scenarios run on a simulated network, each node the real node binary). Idempotent: quick
# when the wanted version is installed and runs. About 16 minutes of build on 2 cores.
#
#   scripts/setup-shadow.sh [--prefix DIR] [--force]
#
#   --prefix DIR  where to install (default /usr/local as root, else ~/.local): the simulator
#                 is DIR/bin/shadow; stackbench finds it on PATH or through $SHADOW_BIN
#   --force       build and install even when the wanted version is present
#
# Where GitHub cannot be reached, point these at local git repositories (mirrors) of the
# same projects; each defaults to its GitHub address:
#   SHADOW_SRC           shadow/shadow's sources
#   SHADOW_BYTES_SRC     shadow/bytes, a git dependency of Shadow's cargo build
#   SHADOW_VSPRINTF_SRC  shadow/vsprintf, the other one
# Crates come from the crate registry as usual.
#
# Packages it installs (Debian/Ubuntu): Shadow's documented build dependencies, cmake,
# libclang-dev, libglib2.0-dev, pkg-config, make, gcc, g++, python3-networkx, xz-utils.
set -euo pipefail
cd "$(dirname "$0")/.."

version=v3.3.0
prefix=""
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { echo "setup-shadow.sh: --prefix needs a directory" >&2; exit 2; }
              prefix="$2"; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "setup-shadow.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$prefix" ]; then
  if [ "$(id -u)" -eq 0 ]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
fi
shadow_src=${SHADOW_SRC:-https://github.com/shadow/shadow}
bytes_src=${SHADOW_BYTES_SRC:-https://github.com/shadow/bytes}
vsprintf_src=${SHADOW_VSPRINTF_SRC:-https://github.com/shadow/vsprintf}

say() { echo "setup-shadow.sh: $*"; }
fail() { echo "setup-shadow.sh: $*" >&2; exit 1; }

# Proof that an installed Shadow runs: a one-host simulation of one process, whose output
# must be what the process printed.
prove() {
  local bin=$1 dir
  dir=$(mktemp -d)
  cat > "$dir/proof.yaml" <<EOF
general:
  stop_time: 2s
  data_directory: $dir/shadow.data
network:
  graph:
    type: 1_gbit_switch
hosts:
  proof:
    network_node_id: 0
    processes:
    - path: /bin/echo
      args: stackbench-shadow-proof
      start_time: 1s
EOF
  if ! (cd "$dir" && "$bin" proof.yaml > shadow.log 2>&1); then
    tail -20 "$dir/shadow.log" >&2
    rm -rf "$dir"
    return 1
  fi
  local out
  out=$(cat "$dir"/shadow.data/hosts/proof/*.stdout 2>/dev/null || true)
  rm -rf "$dir"
  [ "$out" = stackbench-shadow-proof ]
}

bin="$prefix/bin/shadow"
if [ "$force" = 0 ] && [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "${version#v}"; then
  prove "$bin" || fail "$bin ($version) is installed but did not run a one-host simulation (above); rerun with --force"
  say "ready: $("$bin" --version | head -1) at $bin ran a one-host simulation"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else sudo="none"; fi
packages=(cmake findutils libclang-dev libglib2.0-0 libglib2.0-dev make netbase pkg-config
          python3 python3-networkx xz-utils util-linux gcc g++ git)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$sudo" != none ] || fail "missing packages; as root run: apt-get install -y ${missing[*]}"
  say "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || fail "cargo is not on PATH (Shadow is built with Rust; see https://rustup.rs)"

work=target/shadow-build
src="$work/shadow-$version"
if [ ! -d "$src/.git" ] || [ "$(git -C "$src" describe --tags 2>/dev/null)" != "$version" ]; then
  rm -rf "$src"
  mkdir -p "$work"
  say "fetching Shadow $version from $shadow_src"
  git clone -q "$shadow_src" "$src"
  git -C "$src" -c advice.detachedHead=false checkout -q "$version"
fi

# Cargo fetches Shadow's two git dependencies with the git command line, through these
# rewrites when mirrors were given (a rewrite of an address to itself changes nothing).
export CARGO_NET_GIT_FETCH_WITH_CLI=true
export GIT_CONFIG_COUNT=2
export GIT_CONFIG_KEY_0="url.$bytes_src.insteadOf" GIT_CONFIG_VALUE_0=https://github.com/shadow/bytes
export GIT_CONFIG_KEY_1="url.$vsprintf_src.insteadOf" GIT_CONFIG_VALUE_1=https://github.com/shadow/vsprintf

start=$(date +%s)
say "building Shadow $version in $src (about 16 minutes on 2 cores)"
(cd "$src" && ./setup build --clean --prefix "$prefix" --jobs "$(nproc)") > "$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log" >&2; fail "building Shadow failed; the whole log is $work/build.log"; }
say "installing into $prefix"
mkdir -p "$prefix" 2>/dev/null || true
if [ -w "$prefix" ]; then
  (cd "$src" && ./setup install) >> "$work/build.log" 2>&1
else
  [ "$sudo" != none ] || fail "cannot write $prefix; choose another with --prefix"
  (cd "$src" && $sudo ./setup install) >> "$work/build.log" 2>&1
fi || { tail -30 "$work/build.log" >&2; fail "installing Shadow failed; the whole log is $work/build.log"; }

prove "$bin" || fail "the Shadow just built ($bin) did not run a one-host simulation (above)"
say "ready: $("$bin" --version | head -1) at $bin ran a one-host simulation; built in $(( $(date +%s) - start )) s"
case ":$PATH:" in *":$prefix/bin:"*) ;; *) say "note: $prefix/bin is not on PATH; add it, or set SHADOW_BIN=$bin" ;; esac
