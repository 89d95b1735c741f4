#!/usr/bin/env bash
# Records API under wrk -c64, beside nginx return-200 in the same run:
#   view by id, create, filtered list on an indexed field (perPage 30) with and without
#   skipTotal, at 10k and 100k records. Requests are made as a superuser.
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
SIZES=${SIZES:-"10000 100000"}
WRK=(-t2 -c64 -d"$DURATION")

"$TANDEM_BIN" superuser upsert bench@example.com bench-password-1 --dir "$BENCH_TMP/data" >/dev/null
nport=$(free_port)
start_nginx "$nport"
start_tandem "$BENCH_TMP/data"
TOKEN=$(curl -sf -X POST -H 'Content-Type: application/json' \
    -d '{"identity":"bench@example.com","password":"bench-password-1"}' \
    "$TANDEM_URL/api/collections/_superusers/auth-with-password" | node -pe 'JSON.parse(require("fs").readFileSync(0)).token')
export TANDEM_URL TOKEN

curl -sf -X POST -H "Authorization: $TOKEN" -H 'Content-Type: application/json' "$TANDEM_URL/api/collections" -d '{
  "name":"bench","type":"base",
  "fields":[{"name":"title","type":"text"},{"name":"category","type":"number"},{"name":"body","type":"text"}],
  "indexes":["CREATE INDEX idx_bench_category ON bench (category)"]}' >/dev/null

# seed: N records with category in [0, 1000), so a category filter matches ~N/1000 rows
seed() {
    node --input-type=module -e '
const [url, token, from, to] = [process.env.TANDEM_URL, process.env.TOKEN, +process.argv[1], +process.argv[2]];
let next = from; const ids = [];
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
process.stdout.write(ids.join("\n") + "\n");' "$1" "$2"
}

cat >"$BENCH_TMP/view.lua" <<'LUA'
local ids = {}
for line in io.lines(os.getenv("IDS")) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
    return wrk.format("GET", "/api/collections/bench/records/" .. ids[math.random(#ids)],
                      {["Authorization"] = os.getenv("TOKEN")})
end
LUA
cat >"$BENCH_TMP/create.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Authorization"] = os.getenv("TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title":"created by wrk","category":1234,"body":"lorem ipsum dolor sit amet"}'
LUA
cat >"$BENCH_TMP/list.lua" <<'LUA'
math.randomseed(os.time())
local skip = os.getenv("SKIP")
request = function()
    local path = "/api/collections/bench/records?perPage=30&filter=" ..
                 "category%3D" .. math.random(0, 999)
    if skip == "1" then path = path .. "&skipTotal=1" end
    return wrk.format("GET", path, {["Authorization"] = os.getenv("TOKEN")})
end
LUA

ngx=$(wrk_rps "http://127.0.0.1:$nport/" "${WRK[@]}")
echo "nginx return-200: $ngx req/s (load $(cut -d' ' -f1-3 /proc/loadavg))"
# each figure: req/s, then tandem's CPU time per request (user + system) during that run
show() { echo "$1 req/s, $2 cpu-us/req${3:+, $3 non-2xx}"; }
have=0
: >"$BENCH_TMP/ids"
for n in $SIZES; do
    seed "$have" "$n" >>"$BENCH_TMP/ids"
    have=$n
    export IDS=$BENCH_TMP/ids
    read -r view view_cpu view_bad < <(wrk_cpu "$TANDEM_PID" "$TANDEM_URL" "${WRK[@]}" -s "$BENCH_TMP/view.lua")
    read -r list list_cpu list_bad < <(SKIP=0 wrk_cpu "$TANDEM_PID" "$TANDEM_URL" "${WRK[@]}" -s "$BENCH_TMP/list.lua")
    read -r lists lists_cpu lists_bad < <(SKIP=1 wrk_cpu "$TANDEM_PID" "$TANDEM_URL" "${WRK[@]}" -s "$BENCH_TMP/list.lua")
    echo "records=$n view $(show "$view" "$view_cpu" "${view_bad#0}") ($(ratio "$view" "$ngx") of nginx, target 25k);" \
         "filtered list $(show "$list" "$list_cpu" "${list_bad#0}");" \
         "with skipTotal $(show "$lists" "$lists_cpu" "${lists_bad#0}") (target 5k at 100k)"
done
read -r create create_cpu create_bad < <(wrk_cpu "$TANDEM_PID" "$TANDEM_URL/api/collections/bench/records" "${WRK[@]}" -s "$BENCH_TMP/create.lua")
echo "create $(show "$create" "$create_cpu" "${create_bad#0}") ($(ratio "$create" "$ngx") of nginx, target 10k)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
