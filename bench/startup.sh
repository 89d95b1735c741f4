#!/usr/bin/env bash
# Start-up with a long event log: how soon tandem listens, and how soon capture takes events
# (its dedup set must hold every message id of the window first), for EVENTS (10,000,000)
# events logged by bench/pipeline_gen.c:
#   1. no snapshot: the set is read from the whole log (what every start did before the
#      snapshot existed: the server listened only after this);
#   2. after a clean stop, which wrote the snapshot: the set is loaded from it;
#   3. after a kill -9 with TAIL (1,000,000) events logged since the snapshot: snapshot + tail.
# Prints, per start: seconds to listen, seconds until tandem_capture_ready is 1, and peak RSS.
# Target (issue 19): listening in under 1 s with 10M events in the log.
source "$(dirname "$0")/lib.sh"
EVENTS=${EVENTS:-10000000} TAIL=${TAIL:-1000000}

bench_cc pipeline_gen
data=$BENCH_TMP/data
echo "startup: generating $EVENTS events (load $(cut -d' ' -f1-3 /proc/loadavg))"
"$BENCH_TOP/build/pipeline_gen" "$data" "$EVENTS"

# start_timed LABEL: starts tandem on $data, prints listen and ready times
start_timed() {
    local label=$1 out=$BENCH_TMP/tandem.$RANDOM.out t0 listen ready
    t0=$(date +%s.%N)
    "$TANDEM_BIN" serve --http 127.0.0.1:0 --dir "$data" --log-level warn >"$out" 2>"$out.err" &
    BENCH_PIDS+=($!)
    TANDEM_PID=$!
    for _ in $(seq 6000); do [ -s "$out" ] && break; sleep 0.01; done
    [ -s "$out" ] || { echo "tandem did not start: $(cat "$out.err")" >&2; return 1; }
    listen=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    TANDEM_URL=$(head -1 "$out" | sed -E 's/^tandem listening on //')
    for _ in $(seq 30000); do
        curl -sf "$TANDEM_URL/metrics" | grep -q '^tandem_capture_ready 1' && break
        sleep 0.02
    done
    ready=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    echo "$label: listening after $listen s, capture ready after $ready s," \
         "RSS $(($(awk '/VmHWM/ { print $2 }' /proc/$TANDEM_PID/status) / 1024)) MiB peak" \
         "(load $(cut -d' ' -f1 /proc/loadavg))"
}

start_timed "1. no snapshot ($EVENTS events)"
t0=$(date +%s.%N)
stop_pid "$TANDEM_PID"
echo "   clean stop (writes the snapshot) took" \
     "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s;" \
     "snapshot $(($(stat -c %s "$data/dedup.snapshot") / 1048576)) MiB"

start_timed "2. snapshot after a clean stop"
stop_pid "$TANDEM_PID" KILL
"$BENCH_TOP/build/pipeline_gen" "$data" "$TAIL" >/dev/null
start_timed "3. kill -9, then $TAIL more events logged after the snapshot"
stop_pid "$TANDEM_PID"
