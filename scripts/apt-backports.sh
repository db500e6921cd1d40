# Sourced by setup.sh and setup-vm.sh: bookworm-backports in apt's sources.
#
# ensure_backports SUDO REASON: on Debian bookworm, adds bookworm-backports to apt's sources
# (and updates the package lists) unless some source already names it; says so, with REASON.
# Prints nothing and changes nothing elsewhere. Returns 1 when it could not (no root, no sudo).
backports_sources=/etc/apt/sources.list.d/stackbench-bookworm-backports.sources
os_codename() { (. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}"); }
ensure_backports() {
  local sudo=$1 reason=$2
  [ "$(os_codename)" = bookworm ] && command -v apt-cache >/dev/null || return 0
  grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ && return 0
  [ "$sudo" = none ] && return 1
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | $sudo tee "$backports_sources" >/dev/null
  echo "changed: added bookworm-backports to apt's sources ($backports_sources), $reason"
  $sudo apt-get update -qq
}
