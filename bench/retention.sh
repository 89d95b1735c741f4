#!/usr/bin/env bash
# Warehouse retention beside a loader (bench/retention_bench.c): EVENTS events (default
# 1,000,000), half older than the cutoff; the loader's commit latency alone and while
# wh_retain deletes the old half in windows of WINDOW log offsets (default 122,880).
source "$(dirname "$0")/lib.sh"
cd "$BENCH_TOP"
cc -O2 -std=gnu11 -Isrc -Ideps/duckdb/include bench/retention_bench.c build/libtandem_lib.a \
    $(pkg-config --libs jansson sqlite3 libsodium libmicrohttpd libjwt) -Ldeps/duckdb/lib -lduckdb \
    -Wl,-rpath,"$PWD/deps/duckdb/lib" -lz -lpthread -lm -o build/retention_bench
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$BENCH_TMP/data"
build/retention_bench "$BENCH_TMP/data"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
