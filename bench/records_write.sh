#!/usr/bin/env bash
# Record writes under wrk -t2 -c64, beside nginx return-200 in the same run: create, update
# (PATCH of random records) and delete (each record once) on a `bench` collection holding
# RECORDS (default 100,000) records, as a superuser. Prints req/s and the server's CPU time
# per request (user + system from /proc/PID/stat over the wrk run). The seeded directory is
# copied for each operation, so each starts from the same RECORDS records. Beside the total,
# the CPU per request of each group of the server's threads: http (libmicrohttpd's workers),
# writer (the group-commit writer), relay (the outbox relay) and other (the warehouse loader
# and DuckDB's threads, the log's flusher, realtime, timers); and the server's peak RSS.
#   KEEP=DIR keeps (or reuses) the seeded directory in DIR; OPS="create update delete";
#   SERVE_ARGS="..." more `tandem serve` options (e.g. --warehouse-threads 1).
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-5s}
RECORDS=${RECORDS:-100000}
OPS=${OPS:-"create update delete"}
WRK=(-t2 -c64 -d"$DURATION")
SEED=${KEEP:-$BENCH_TMP/seed}

signin() {
    curl -sf -X POST -H 'Content-Type: application/json' \
        -d '{"identity":"bench@example.com","password":"bench-password-1"}' \
        "$TANDEM_URL/api/collections/_superusers/auth-with-password" |
        node -pe 'JSON.parse(require("fs").readFileSync(0)).token'
}

if [ ! -s "$SEED/ids" ]; then
    mkdir -p "$SEED"
    "$TANDEM_BIN" superuser upsert bench@example.com bench-password-1 --dir "$SEED/data" >/dev/null
    start_tandem "$SEED/data"
    TOKEN=$(signin)
    curl -sf -X POST -H "Authorization: $TOKEN" -H 'Content-Type: application/json' "$TANDEM_URL/api/collections" -d '{
      "name":"bench","type":"base",
      "fields":[{"name":"title","type":"text"},{"name":"category","type":"number"},{"name":"body","type":"text"}],
      "indexes":["CREATE INDEX idx_bench_category ON bench (category)"]}' >/dev/null
    TANDEM_URL=$TANDEM_URL TOKEN=$TOKEN node --input-type=module -e '
const [url, token, to] = [process.env.TANDEM_URL, process.env.TOKEN, +process.argv[1]];
let next = 0; const ids = [];
async function worker() {
  while (next < to) {
    const i = next++;
    const r = await fetch(`${url}/api/collections/bench/records`, { method: "POST",
      headers: { Authorization: token, "Content-Type": "application/json" },
      body: JSON.stringify({ title: `record ${i}`, category: i % 1000, body: "lorem ipsum ".repeat(8) }) });
    if (r.status !== 200) throw new Error(`seed ${r.status}: ${await r.text()}`);
    ids.push((await r.json()).id);
  }
}
await Promise.all(Array.from({ length: 32 }, worker));
process.stdout.write(ids.join("\n") + "\n");' "$RECORDS" >"$SEED/ids.tmp"
    stop_tandem
    mv "$SEED/ids.tmp" "$SEED/ids"
fi
export IDS=$SEED/ids

cat >"$BENCH_TMP/create.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Authorization"] = os.getenv("TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title":"created by wrk","category":1234,"body":"lorem ipsum dolor sit amet"}'
LUA
cat >"$BENCH_TMP/update.lua" <<'LUA'
local ids = {}
for line in io.lines(os.getenv("IDS")) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
    return wrk.format("PATCH", "/api/collections/bench/records/" .. ids[math.random(#ids)],
        {["Authorization"] = os.getenv("TOKEN"), ["Content-Type"] = "application/json"},
        '{"title":"updated by wrk","category":77}')
end
LUA
cat >"$BENCH_TMP/delete.lua" <<'LUA'
-- thread t of n deletes ids t+1, t+1+n, ...: every record once
local ids = {}
for line in io.lines(os.getenv("IDS")) do ids[#ids + 1] = line end
local threads = 0
setup = function(thread) thread:set("tid", threads); threads = threads + 1 end
local i = 0
request = function()
    local k = (i * 2 + tid) % #ids + 1
    i = i + 1
    return wrk.format("DELETE", "/api/collections/bench/records/" .. ids[k],
        {["Authorization"] = os.getenv("TOKEN")})
end
LUA

# thread_ticks PID: "GROUP TICKS" per thread of PID (utime + stime in clock ticks)
thread_ticks() {
    local t comm
    for t in /proc/"$1"/task/*; do
        comm=$(cat "$t/comm" 2>/dev/null) || continue
        case $comm in
        MHD-*) comm=http ;;
        rec-writer) comm=writer ;;
        outbox-relay) comm=relay ;;
        *) comm=other ;;
        esac
        awk -v g="$comm" '{ sub(/^.*\) /, ""); print g, $12 + $13 }' "$t/stat" 2>/dev/null || true
    done
}
# groups_us BEFORE AFTER CPU_US: the CPU-us per request CPU_US split by thread group in the
# proportion of their ticks during the run
groups_us() {
    awk -v us="$3" '
        FNR == NR { b[$1] += $2; next }
        { a[$1] += $2 }
        END { t = 0; for (g in a) { d[g] = a[g] - b[g]; t += d[g] }
              if (t <= 0) t = 1
              printf "http %.1f, writer %.1f, relay %.1f, other %.1f", us * d["http"] / t,
                  us * d["writer"] / t, us * d["relay"] / t, us * d["other"] / t }' "$1" "$2"
}

nport=$(free_port)
start_nginx "$nport"
echo "nginx return-200: $(wrk_rps "http://127.0.0.1:$nport/" "${WRK[@]}") req/s (load $(cut -d' ' -f1-3 /proc/loadavg))"
for op in $OPS; do
    rm -rf "$BENCH_TMP/data"
    cp -a "$SEED/data" "$BENCH_TMP/data"
    # shellcheck disable=SC2086
    start_tandem "$BENCH_TMP/data" ${SERVE_ARGS:-}
    TOKEN=$(signin)
    export TOKEN
    url=$TANDEM_URL
    [ "$op" = create ] && url=$TANDEM_URL/api/collections/bench/records
    thread_ticks "$TANDEM_PID" >"$BENCH_TMP/ticks0"
    read -r rps cpu bad < <(wrk_cpu "$TANDEM_PID" "$url" "${WRK[@]}" -s "$BENCH_TMP/$op.lua")
    thread_ticks "$TANDEM_PID" >"$BENCH_TMP/ticks1"
    note=""
    [ "${bad:-0}" != 0 ] && note=", $bad non-2xx"
    echo "$op (records=$RECORDS): $rps req/s, $cpu cpu-us/req$note" \
        "($(groups_us "$BENCH_TMP/ticks0" "$BENCH_TMP/ticks1" "$cpu")), peak RSS" \
        "$(awk '/^VmHWM/ { print $2 / 1024 " MiB" }' "/proc/$TANDEM_PID/status")" \
        "(load $(cut -d' ' -f1 /proc/loadavg))"
    stop_tandem
done
