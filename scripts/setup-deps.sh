#!/usr/bin/env bash
# Installs what tandem needs to build, test and benchmark on Debian 12.
# Debian packages through apt-get (sudo when not root), skipping those already present;
# DuckDB's C header and library from the npm registry into deps/ (git-ignored);
# the Node packages the integration tests drive and the dashboard's chart library (web/);
# Debian's chromium for the dashboard's browser test; curl and jq, which README.md's tour uses;
# wave 2's libraries (libcurl for mail and OAuth2, libvips for thumbnails, librdkafka for the
# Kafka log, XGBoost for ML) and the test-only references (Debian's python3-xgboost and sklearn,
# run with /usr/bin/python3; kcat to inspect Kafka topics).
#
# usage: scripts/setup-deps.sh [--bench]     --bench also installs wrk, nginx, and the
#                                            ClickHouse and PostgreSQL servers bench/insights.sh
#                                            compares with
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bench=0
for a in "$@"; do
    case "$a" in
    --bench) bench=1 ;;
    *) echo "setup-deps: unknown option $a" >&2; exit 2 ;;
    esac
done

pkgs=(build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev libsqlite3-dev
      libsodium-dev libjwt-dev libcmocka-dev zlib1g-dev sqlite3 nodejs npm clang-format chromium
      curl jq libcurl4-openssl-dev libssl-dev libvips-dev librdkafka-dev libxgboost-dev
      python3-xgboost python3-sklearn kcat libcrypt-dev)
[ "$bench" = 1 ] && pkgs+=(wrk nginx clickhouse-server clickhouse-client postgresql)

missing=()
for p in "${pkgs[@]}"; do
    # node and npm may come from elsewhere than Debian; accept any working install
    case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup-deps: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# DuckDB 1.4.4: header from the duckdb npm package, shared library from the node bindings.
duck="$top/deps/duckdb"
if [ ! -f "$duck/lib/libduckdb.so" ] || [ ! -f "$duck/include/duckdb.h" ]; then
    echo "setup-deps: fetching DuckDB 1.4.4 from the npm registry"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent duckdb@1.4.4 @duckdb/node-bindings-linux-x64@1.4.4-r.4 >/dev/null)
    mkdir -p "$duck/include" "$duck/lib"
    tar -xzf "$tmp/duckdb-1.4.4.tgz" -C "$tmp" package/src/duckdb/src/include/duckdb.h
    cp "$tmp/package/src/duckdb/src/include/duckdb.h" "$duck/include/duckdb.h"
    tar -xzf "$tmp/duckdb-node-bindings-linux-x64-1.4.4-r.4.tgz" -C "$tmp" package/libduckdb.so
    cp "$tmp/package/libduckdb.so" "$duck/lib/libduckdb.so"
fi

# Node packages for the integration tests (the real SDKs), pinned by the lock file.
it="$top/tests/integration"
if [ -f "$it/package.json" ]; then
    if [ ! -d "$it/node_modules" ] || [ "$it/package-lock.json" -nt "$it/node_modules/.package-lock.json" ]; then
        echo "setup-deps: installing integration test packages"
        (cd "$it" && npm ci --silent --no-audit --no-fund)
    fi
fi

# The dashboard's chart library, copied into the binary at build time, pinned by the lock file.
web="$top/web"
if [ -f "$web/package.json" ]; then
    if [ ! -d "$web/node_modules" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
        echo "setup-deps: installing the dashboard's packages"
        (cd "$web" && npm ci --silent --no-audit --no-fund)
    fi
fi
