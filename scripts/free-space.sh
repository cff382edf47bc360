#!/usr/bin/env bash
# Sourced by setup.sh and test.sh: one check for "is there room?", so that a full disk stops a
# script with one line up front instead of an OSError buried mid-install or twenty failed tests.

# require_free_gb DIR NEED_GB WHAT OVERRIDE_VAR [HINT]: exit 1 when DIR has under NEED_GB GB free.
require_free_gb() {
  local dir=$1 need_gb=$2 what=$3 override=$4 hint=${5:-} free_gb
  free_gb=$(( $(df -Pk "$dir" | awk 'NR==2 {print $4}') / 1048576 ))
  if [ "$free_gb" -lt "$need_gb" ]; then
    echo "error: $dir has $free_gb GB free; $what needs about $need_gb GB" \
         "(free some space${hint:+, $hint}, or set $override to override)" >&2
    exit 1
  fi
}
