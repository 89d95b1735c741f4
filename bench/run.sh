#!/usr/bin/env bash
# Runs every benchmark; each prints its figures and its ratio against a reference measured
# in the same run. Not part of `make test`.
set -euo pipefail
here=$(dirname "$0")
for b in "$here"/http.sh; do
    echo "== $(basename "$b")"
    "$b"
done
