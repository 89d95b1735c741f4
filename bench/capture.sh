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

cat >"$BENCH_TMP/batch.lua" <<'LUA'
-- 100 track events of about 500 bytes each; message ids differ on every request so dedup
-- never drops them.
local key = os.getenv("KEY")
local parts = {}
for i = 1, 100 do
    parts[i] = '{"type":"track","event":"Product Viewed","userId":"user-%d","messageId":"%s-' .. i ..
        '","timestamp":"2026-11-21T12:00:00.000Z","properties":{"product_id":"sku-12345",' ..
        '"category":"Games","name":"Monopoly: 3rd Edition","price":19.99,"quantity":1,' ..
        '"currency":"USD","url":"https://example.com/products/monopoly","image_url":' ..
        '"https://example.com/img/monopoly.png"},"context":{"library":{"name":"bench",' ..
        '"version":"1.0"},"ip":"203.0.113.7","userAgent":"Mozilla/5.0 (X11; Linux x86_64)",' ..
        '"page":{"path":"/products/monopoly","referrer":"https://example.com/"}}}'
end
-- The body is cut at the per-request fields once; each request only joins the pieces (a
-- gsub over the 55 kB template per request cost wrk about 1 ms of CPU, as much as the server).
local head = '{"writeKey":"' .. key .. '","sentAt":"2026-11-21T12:00:01.000Z","batch":['
local pieces = {}
for i = 1, 100 do
    local a, b = parts[i]:match("^(.-)%%d(.*)$")
    local c, d = b:match("^(.-)%%s(.*)$")
    pieces[#pieces + 1] = (i == 1 and head or ",") .. a
    pieces[#pieces + 1] = false -- user number
    pieces[#pieces + 1] = c
    pieces[#pieces + 1] = false -- request prefix
    pieces[#pieces + 1] = d
end
pieces[#pieces + 1] = "]}"
local counter = 0
-- thread_id is set per wrk thread by setup()
request = function()
    counter = counter + 1
    local prefix = (thread_id or 0) .. "-" .. counter
    local user = tostring(counter % 1000)
    for i = 2, #pieces - 1, 5 do
        pieces[i] = user
        pieces[i + 2] = prefix
    end
    return wrk.format("POST", "/v1/batch", {["Content-Type"] = "application/json"},
                      table.concat(pieces))
end
setup = function(thread) thread:set("thread_id", math.random(1, 1e9)) end
LUA

ngx=$(wrk_rps "http://127.0.0.1:$nport/" -t2 -c"$CONNS" -d"$DURATION")
# CPU seconds (user + system) of a process so far, from /proc/PID/stat
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"; }
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
