#!/usr/bin/env bash
# The funnel aggregate on its own: build/funnel_udf (bench/funnel_udf.c) generates EVENTS
# (default 10,000,000) events of USERS (default 1,000,000) persons in an in-memory DuckDB and
# times the 4-step, 14-day funnel through tandem_funnel and through the pure-SQL ASOF chain
# (checking that their step counts agree), then the same events go to ClickHouse 18.16
# (clickhouse-server on free 127.0.0.1 ports, files in the run's temporary directory, stopped by
# PID) and the same question is asked with windowFunnel. RUNS (default 3) runs of each query;
# min and median wall time. Set CLICKHOUSE=0 to skip ClickHouse, DUCKDB=0 to skip the DuckDB
# queries (the data is still generated there).
source "$(dirname "$0")/lib.sh"
EVENTS=${EVENTS:-10000000}
USERS=${USERS:-1000000}
RUNS=${RUNS:-3}
CLICKHOUSE=${CLICKHOUSE:-1}
DUCKDB=${DUCKDB:-1}
BIN=$BENCH_TOP/build/funnel_udf

if [ ! -x "$BIN" ] || [ "$BENCH_TOP/bench/funnel_udf.c" -nt "$BIN" ] ||
    [ "$BENCH_TOP/build/libtandem_lib.a" -nt "$BIN" ]; then
    cc -O2 -std=gnu11 -I"$BENCH_TOP/src" -I"$BENCH_TOP/deps/duckdb/include" \
        "$BENCH_TOP/bench/funnel_udf.c" "$BENCH_TOP/build/libtandem_lib.a" \
        -L"$BENCH_TOP/deps/duckdb/lib" -lduckdb -Wl,-rpath,"$BENCH_TOP/deps/duckdb/lib" \
        -ljansson -lpthread -lm -o "$BIN"
fi

tsv=$BENCH_TMP/events.tsv
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
duck_runs=$RUNS
[ "$DUCKDB" = 1 ] || duck_runs=0
if [ "$CLICKHOUSE" = 1 ]; then
    "$BIN" "$EVENTS" "$USERS" "$duck_runs" "$tsv"
else
    "$BIN" "$EVENTS" "$USERS" "$RUNS"
    exit 0
fi

ch=$BENCH_TMP/clickhouse
start_clickhouse "$ch" 10000000000
tcp=$CH_TCP
# the server's CPU time (user + system, all threads) in ms
ch_cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) * 1000 / hz }' "/proc/$CH_PID/stat"; }
chq() { clickhouse-client --port "$tcp" "$@"; }
echo "ClickHouse $(chq -q 'SELECT version()') on 127.0.0.1:$tcp"
chq -q "CREATE TABLE events (ts DateTime, event String, person_id String)
        ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (toDate(ts), event, person_id)"
t0=$(date +%s.%N)
chq -q 'INSERT INTO events FORMAT TabSeparated' <"$tsv"
chq -q 'OPTIMIZE TABLE events FINAL'
# (count() right after OPTIMIZE can trip over a merged-away part in 18.16: count the parts)
echo "ClickHouse load: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s, $(chq -q "SELECT sum(rows) FROM system.parts WHERE table = 'events' AND active") rows"
sql="SELECT countIf(l >= 1), countIf(l >= 2), countIf(l >= 3), countIf(l >= 4) FROM (SELECT person_id,
     windowFunnel(1209600)(ts, event = 'signup', event = 'activate', event = 'purchase', event = 'invite') AS l
     FROM events WHERE event IN ('signup', 'activate', 'purchase', 'invite') GROUP BY person_id)"
times=()
best= best_cpu=
for _ in $(seq "$RUNS"); do
    for try in 1 2 3; do
        c0=$(ch_cpu_ms)
        ans=$(chq --time -q "$sql" 2>"$ch/time") && break
        [ "$try" = 3 ] && { cat "$ch/time" >&2; exit 1; }
        sleep 1
    done
    t=$(awk 'END { printf "%.1f", $1 * 1000 }' "$ch/time")
    cpu=$(awk -v a="$c0" -v b="$(ch_cpu_ms)" 'BEGIN { printf "%.1f", b - a }')
    times+=("$t")
    if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$t best_cpu=$cpu; fi
done
sorted=$(printf '%s\n' "${times[@]}" | sort -g)
printf '%-34s wall min %7.1f ms median %7.1f ms, cpu %7.1f ms -> %s\n' "ClickHouse windowFunnel" \
    "$(echo "$sorted" | head -1)" "$(echo "$sorted" | sed -n "$(((RUNS + 1) / 2))p")" "$best_cpu" \
    "$(echo "$ans" | tr '\t' ' ')"
echo "(ClickHouse keeps whole seconds, so its counts can differ slightly where a person has two"
echo " step events within one second)"
