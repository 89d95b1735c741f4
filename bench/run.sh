#!/usr/bin/env bash
# Runs every benchmark; each prints its figures and its ratio against a reference measured
# in the same run. Not part of `make test`. The whole set takes about 25-35 minutes (records,
# auth and pipeline seed 100k records / 5M events first; insights generates 10M events and
# loads them into tandem, ClickHouse and PostgreSQL). Run one with BENCH=records etc.
set -euo pipefail
here=$(dirname "$0")
for name in ${BENCH:-http capture records auth pipeline insights realtime}; do
    echo "== $name"
    "$here/$name.sh"
done
