#!/usr/bin/env bash
# Realtime fan-out: CLIENTS (10,000) SSE streams subscribed to `posts/*`, half as guests and
# half as one user whose listRule hides half the records, while the superuser creates RATE
# (40) records/s for DURATION (20) seconds. Prints deliveries/s, p50/p99 change-to-delivery latency,
# tandem's RSS with the streams held and at its peak, and tandem's CPU per delivery; exits
# non-zero if any stream missed a record it may see, got one twice or got a hidden one.
# The load client is bench/realtime.mjs (WORKERS node processes, raw sockets). First it prints
# the kernel's floor for the same fan-out (bench/loopback_floor.c: one write to each of CLIENTS
# loopback sockets per pass, 2 writer threads, a C reader, no HTTP), which bounds the latency
# any server can reach here: a change waits out the pass under way and then its own.
# Targets (2 cores): 10,000 streams in < 1 GiB RSS, >= 200k deliveries/s, p99 < 250 ms.
source "$(dirname "$0")/lib.sh"
export CLIENTS=${CLIENTS:-10000} WORKERS=${WORKERS:-2} RATE=${RATE:-40} DURATION=${DURATION:-20}
export DRAIN=${DRAIN:-15} CLK_TCK=$(getconf CLK_TCK)

# every stream is a socket on both ends: tandem needs CLIENTS / 0.75 descriptors (it keeps a
# quarter of its limit for itself), each worker CLIENTS / WORKERS
ulimit -n "$(ulimit -Hn)"
need=$((CLIENTS * 4 / 3 + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    echo "open-file limit $(ulimit -n) is below the $need that $CLIENTS streams need" >&2
    exit 1
fi

SU_EMAIL=bench@example.com SU_PASSWORD=bench-password-1 USER_PASSWORD=bench-user-password-1
"$TANDEM_BIN" superuser upsert "$SU_EMAIL" "$SU_PASSWORD" --dir "$BENCH_TMP/data" >/dev/null
start_tandem "$BENCH_TMP/data" --max-connections-per-ip 0 --realtime-max-clients $((CLIENTS + 100)) \
    --idle-timeout 120s
export TANDEM_URL TANDEM_PID

json_field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[process.argv[1]]))' "$1"; }
api() { # METHOD PATH [BODY] with the superuser's token
    curl -sf -X "$1" -H "Authorization: $TOKEN" -H 'Content-Type: application/json' \
        "$TANDEM_URL$2" ${3:+-d "$3"}
}
TOKEN=$(curl -sf -X POST -H 'Content-Type: application/json' \
    -d "{\"identity\":\"$SU_EMAIL\",\"password\":\"$SU_PASSWORD\"}" \
    "$TANDEM_URL/api/collections/_superusers/auth-with-password" | json_field token)
export TOKEN

# guests see every record; the user only those it owns: the writer gives even n to the user
# and odd n to "someone-else", so the rule hides exactly the odd half from the user
api POST /api/collections '{
  "name":"posts","type":"base",
  "listRule":"@request.auth.id = \"\" || owner = @request.auth.id",
  "viewRule":"@request.auth.id = \"\" || owner = @request.auth.id",
  "fields":[{"name":"owner","type":"text"},{"name":"n","type":"number"},{"name":"t","type":"number"},
            {"name":"created","type":"autodate","onCreate":true}]}' >/dev/null
USER_ID=$(api POST /api/collections/users/records \
    "{\"email\":\"reader@example.com\",\"password\":\"$USER_PASSWORD\",\"passwordConfirm\":\"$USER_PASSWORD\"}" |
    json_field id)
USER_TOKEN=$(curl -sf -X POST -H 'Content-Type: application/json' \
    -d "{\"identity\":\"reader@example.com\",\"password\":\"$USER_PASSWORD\"}" \
    "$TANDEM_URL/api/collections/users/auth-with-password" | json_field token)
export USER_ID USER_TOKEN

bench_cc loopback_floor
floor_n=$CLIENTS
# the floor holds both ends of every socket in one process until it forks
[ "$(ulimit -n)" != unlimited ] && [ $((2 * floor_n + 16)) -gt "$(ulimit -n)" ] && floor_n=$(( ($(ulimit -n) - 16) / 2 ))
echo "loopback floor (load $(cut -d' ' -f1-3 /proc/loadavg)):"
"$BENCH_TOP/build/loopback_floor" "$floor_n" 20 1500 2 | grep -v '^reader cpu [0-9]'

echo "realtime: $CLIENTS streams ($WORKERS client processes), $RATE records/s for $DURATION s;" \
     "load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
rc=0
trap 'cat "$BENCH_TMP"/tandem.*.err >&2 2>/dev/null; bench_cleanup' EXIT
timeout $((DURATION + DRAIN + 300)) node "$BENCH_TOP/bench/realtime.mjs" || rc=$?
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$rc"
