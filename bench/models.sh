#!/usr/bin/env bash
# SQL models (docs/models.md), in one process on a fresh data directory (bench/models_bench.c):
#   a) a full rebuild of a per-user daily aggregate over EVENTS events (default 10,000,000) as
#      a `table` model, beside the same CREATE TABLE AS run directly in DuckDB on the same
#      database in the same run, alternately, RUNS times (default 3): target <= 1.2x DuckDB;
#   b) the same model `incremental` while RATE events/s (default 20,000) are loaded for
#      DURATION seconds (default 30): load-commit-to-model freshness p99, target < 5 s. The events go
#      straight into the warehouse (wh_load_events), not through capture and the log: the
#      loader's own freshness is bench/pipeline.sh's figure and this adds to it;
#      MERGE=0 runs it as a model that cannot merge (re-aggregating), KEY=user per user only;
#   c) a sync of SYNC_ROWS (default 100,000) rows into a collection through the store,
#      created, then every row changed: target >= 20k rows/s.
source "$(dirname "$0")/lib.sh"
cd "$BENCH_TOP"
cc -O2 -std=gnu11 -Isrc -Ideps/duckdb/include bench/models_bench.c build/libtandem_lib.a \
    $(pkg-config --libs jansson sqlite3 libsodium libmicrohttpd libjwt) -Ldeps/duckdb/lib -lduckdb \
    -Wl,-rpath,"$PWD/deps/duckdb/lib" -lz -lpthread -lm -o build/models_bench
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$BENCH_TMP/data"
build/models_bench "$BENCH_TMP/data"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
