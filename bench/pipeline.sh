#!/usr/bin/env bash
# The data path's two figures:
#  (a) loading: EVENTS (default 5,000,000) realistic events already in the log (written by
#      bench/pipeline_gen.c), then the server starts and the loader moves them into DuckDB;
#      rows/s from /api/pipeline until the events consumer is at the end of the log.
#      Target >= 250k rows/s. Also prints the server's CPU time per row over that window.
#  (b) freshness: a fresh server under a steady capture load of RATE (default 20,000)
#      events/s for SECONDS (default 20); per sampled event, the time from its 200 to its row
#      being returned by /api/warehouse/sql; p50/p99. Target p99 < 1 s.
# Builds build/pipeline_gen when missing. Set PART=load or PART=fresh to run one part.
source "$(dirname "$0")/lib.sh"
EVENTS=${EVENTS:-5000000}
RATE=${RATE:-20000}
SECONDS_FRESH=${SECONDS_FRESH:-20}
PART=${PART:-all}
export SU_EMAIL=bench@example.com SU_PASSWORD=bench-password-123
GEN=$BENCH_TOP/build/pipeline_gen

bench_cc pipeline_gen

if [ "$PART" = all ] || [ "$PART" = load ]; then
    d=$BENCH_TMP/load
    "$GEN" "$d" "$EVENTS"
    "$TANDEM_BIN" superuser upsert "$SU_EMAIL" "$SU_PASSWORD" --dir "$d" >/dev/null
    start_tandem_slow "$d"
    # the server's CPU time (user + system, clock ticks) around the measured load
    spid=${BENCH_PIDS[-1]}
    c0=$(awk '{print $14 + $15}' "/proc/$spid/stat")
    node "$BENCH_TOP/bench/pipeline.mjs" load "$TANDEM_URL" "$EVENTS" | tee "$BENCH_TMP/load.out"
    c1=$(awk '{print $14 + $15}' "/proc/$spid/stat")
    rows=$(sed -nE 's/^loaded ([0-9]+) rows.*/\1/p' "$BENCH_TMP/load.out")
    awk -v a="$c0" -v b="$c1" -v t="$(getconf CLK_TCK)" -v r="${rows:-0}" 'BEGIN {
        if (r > 0) printf "server CPU %.1f s for %d rows = %.2f us/row\nRESULT load_cpu_us_per_row %.2f\n", (b - a) / t, r, (b - a) / t * 1e6 / r, (b - a) / t * 1e6 / r }'
    stop_tandem
    echo "warehouse file: $(du -h "$d/warehouse.duckdb" | cut -f1), log: $(du -sh "$d/log" | cut -f1)"
    rm -rf "$d"
fi

if [ "$PART" = all ] || [ "$PART" = fresh ]; then
    d=$BENCH_TMP/fresh
    mkdir -p "$d"
    key=$("$TANDEM_BIN" writekey create bench --dir "$d")
    "$TANDEM_BIN" superuser upsert "$SU_EMAIL" "$SU_PASSWORD" --dir "$d" >/dev/null
    # up to 256 batch requests in flight plus the prober's: over the default per-address limit
    start_tandem "$d" --max-connections-per-ip 0
    node "$BENCH_TOP/bench/pipeline.mjs" fresh "$TANDEM_URL" "$key" "$RATE" "$SECONDS_FRESH"
    stop_tandem
fi
