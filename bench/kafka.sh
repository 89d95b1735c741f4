#!/usr/bin/env bash
# Capture into Kafka beside the local log, in the same run: sustained 100-event Segment batches
# (bench/capture_batch.lua) through (a) one tandem on the local log, (b) one capture process
# (--log kafka --role capture) and (c) two capture processes, into librdkafka's mock cluster
# (build/tandem_kafka_mock, one broker, 4 partitions). Prints events/s and tandem's CPU per
# event. The mock cluster is not a real broker (it keeps messages in memory and runs in its
# own process here): the figures measure tandem's producer path, and the portable number is
# tandem's CPU per event. Target: Kafka <= 1.5x the local log's CPU per event.
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
MOCK=$BENCH_TOP/build/tandem_kafka_mock

KEY=$("$TANDEM_BIN" writekey create bench --dir "$BENCH_TMP/local")
export KEY
for d in k1 k2; do cp -r "$BENCH_TMP/local" "$BENCH_TMP/$d"; done
cp "$BENCH_TOP/bench/capture_batch.lua" "$BENCH_TMP/batch.lua"

mkfifo "$BENCH_TMP/mock.in"
exec 3<>"$BENCH_TMP/mock.in" # held open: the mock runs until the script ends
"$MOCK" --brokers 1 --partitions 4 <&3 >"$BENCH_TMP/mock.out" 2>&1 &
BENCH_PIDS+=($!)
for _ in $(seq 50); do grep -q BOOTSTRAP "$BENCH_TMP/mock.out" 2>/dev/null && break; sleep 0.1; done
BROKERS=$(awk '/^BOOTSTRAP/ {print $2}' "$BENCH_TMP/mock.out")

# load PIDS URLS: wrk against every URL at once (CONNS split between them); prints
# "EVENTS_PER_S US_CPU_PER_EVENT NON_2XX" with the CPU summed over the tandem PIDS
load() {
    local pids=($1) urls=($2) n=${#urls[@]} t0=0 t1=0 p i
    for p in "${pids[@]}"; do t0=$(awk -v a="$t0" -v b="$(cpu_s "$p")" 'BEGIN { print a + b }'); done
    for i in "${!urls[@]}"; do
        wrk -t1 -c$((CONNS / n)) -d"$DURATION" -s "$BENCH_TMP/batch.lua" "${urls[$i]}" \
            >"$BENCH_TMP/wrk.$i.out" &
    done
    wait # only the wrk runs are children of this subshell
    for p in "${pids[@]}"; do t1=$(awk -v a="$t1" -v b="$(cpu_s "$p")" 'BEGIN { print a + b }'); done
    cat "$BENCH_TMP"/wrk.*.out | awk -v c="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" '
        /requests in/ { req += $1 } /^Requests\/sec:/ { rps += $2 } /Non-2xx/ { bad += $5 }
        END { printf "%.0f %.2f %d\n", rps * 100, c * 1e6 / (req * 100), bad }'
    rm -f "$BENCH_TMP"/wrk.*.out
}

start_tandem "$BENCH_TMP/local"
read -r l_eps l_cpu l_bad <<<"$(load "$TANDEM_PID" "$TANDEM_URL")"
stop_tandem

start_tandem "$BENCH_TMP/k1" --log kafka --kafka-brokers "$BROKERS" --role capture
p1=$TANDEM_PID u1=$TANDEM_URL
read -r k_eps k_cpu k_bad <<<"$(load "$p1" "$u1")"
start_tandem "$BENCH_TMP/k2" --log kafka --kafka-brokers "$BROKERS" --role capture
p2=$TANDEM_PID u2=$TANDEM_URL
read -r k2_eps k2_cpu k2_bad <<<"$(load "$p1 $p2" "$u1 $u2")"

echo "machine load (1/5/15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "local log (one process, loader included):  $l_eps events/s, $l_cpu us CPU/event, non-2xx $l_bad"
echo "kafka, one capture process:                $k_eps events/s, $k_cpu us CPU/event, non-2xx $k_bad"
echo "kafka, two capture processes:              $k2_eps events/s, $k2_cpu us CPU/event, non-2xx $k2_bad"
echo "CPU per event, kafka (one process) / local: $(awk -v a="$k_cpu" -v b="$l_cpu" 'BEGIN { printf "%.2fx (target <= 1.5x)", a / b }')"
