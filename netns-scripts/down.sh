#!/usr/bin/env bash
# Remove exactly what up.sh made for a prefix: down.sh --prefix P. See topology.sh --help.
exec bash "$(dirname "$0")/topology.sh" down "$@"
