#!/usr/bin/env bash
# Renders a report.html in headless Chromium and saves a screenshot, to look at a report as
# a reader would. Installs Debian's chromium when it is missing (needs root for that).
#
#   scripts/screenshot.sh results/runs/<run>/report.html [out.png] [height]
set -euo pipefail
html=${1:?usage: scripts/screenshot.sh REPORT.html [OUT.png] [HEIGHT]}
out=${2:-${html%.html}.png}
height=${3:-2400}
[ -f "$html" ] || { echo "screenshot.sh: no such file: $html" >&2; exit 2; }
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "screenshot.sh: chromium not found; install it with: apt-get install chromium" >&2; exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: Chromium refuses to run as root with its sandbox.
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size="${WIDTH:-1500}","$height" --screenshot="$(realpath -m "$out")" "file://$(realpath "$html")" \
  >/dev/null 2>&1
[ -s "$out" ] || { echo "screenshot.sh: chromium wrote no screenshot" >&2; exit 1; }
echo "screenshot: $out"
