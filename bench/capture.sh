#!/usr/bin/env bash
# Sustained ingest of 100-event Segment batches (~500-byte events) over keep-alive connections
# with the default fsync policy (batch): events/s and acknowledgement latency, beside nginx
# return-200 in the same run. Every acknowledged event is durable in the log.
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}

KEY=$("$TANDEM_BIN" writekey create bench --dir "$BENCH_TMP/data")
export KEY
nport=$(free_port)
start_nginx "$nport"
start_tandem "$BENCH_TMP/data"

cp "$BENCH_TOP/bench/capture_batch.lua" "$BENCH_TMP/batch.lua"

ngx=$(wrk_rps "http://127.0.0.1:$nport/" -t2 -c"$CONNS" -d"$DURATION")
tpid=${BENCH_PIDS[-1]}
t0=$(cpu_s "$tpid")
TIMEFORMAT='%U %S'
{ time wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$BENCH_TMP/batch.lua" "$TANDEM_URL" \
    >"$BENCH_TMP/wrk.out"; } 2>"$BENCH_TMP/wrk.time"
t1=$(cpu_s "$tpid")
out=$(cat "$BENCH_TMP/wrk.out")
rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
total=$(awk '/requests in/ {print $1}' <<<"$out")
p50=$(awk '$1=="50%" {print $2}' <<<"$out")
p99=$(awk '$1=="99%" {print $2}' <<<"$out")
non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
eps=$(awk -v r="$rps" 'BEGIN { printf "%.0f", r * 100 }')
echo "machine load (1/5/15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "nginx return-200: $ngx req/s"
# With other work on the machine the rate follows the CPU share tandem gets; its CPU cost per
# event does not, so it is printed too.
awk -v a="$t0" -v b="$t1" -v n="$total" -v w="$(cat "$BENCH_TMP/wrk.time")" 'BEGIN {
    split(w, x, " "); ev = n * 100
    printf "cpu: tandem %.2f core-s = %.2f us/event (%.0f events per tandem core-second); wrk %.2f core-s\n",
        b - a, (b - a) * 1e6 / ev, ev / (b - a), x[1] + x[2] }'
echo "capture: $rps batches/s = $eps events/s (target 100k); ack latency p50 $p50 p99 $p99;" \
     "non-2xx ${non2xx:-0}; batches/s at $(ratio "$rps" "$ngx") of nginx req/s"
