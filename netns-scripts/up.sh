#!/usr/bin/env bash
# Make a stackbench topology by hand: up.sh --prefix P --nodes N [--uplink 20mbit]. See topology.sh --help.
exec bash "$(dirname "$0")/topology.sh" up "$@"
