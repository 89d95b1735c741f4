# Shared helpers for the benchmark scripts: free ports, nginx as the HTTP ceiling, tandem,
# wrk parsing. Every process started here is stopped by its own PID.
set -euo pipefail

BENCH_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TANDEM_BIN=${TANDEM_BIN:-$BENCH_TOP/build/tandem}
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/tandem-bench.XXXXXX")
BENCH_PIDS=()

# peak_rss PID: prints the peak resident set (VmHWM) of a tandem server started here, just
# before it is stopped (every script reports its server's peak this way: stop_tandem,
# stop_pid and the exit trap call it); nothing for other processes
peak_rss() {
    local pid=$1 kb
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = tandem ] || return 0
    kb=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status" 2>/dev/null) || return 0
    [ -n "$kb" ] || return 0
    echo "tandem (pid $pid) peak RSS: $((kb / 1024)) MiB"
    echo "RESULT tandem_peak_rss_mib $((kb / 1024))"
}

bench_cleanup() {
    for p in "${BENCH_PIDS[@]}"; do peak_rss "$p"; done
    for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${BENCH_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT

free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# start_nginx PORT [ROOT]: `return 200` with a small JSON body, or with ROOT the files under
# it (sendfile on); 2 workers, no access log
start_nginx() {
    local port=$1 root=${2:-} d=$BENCH_TMP/nginx location
    mkdir -p "$d/logs"
    if [ -n "$root" ]; then
        chmod o+x "$BENCH_TMP" && chmod -R o+rX "$root" # nginx's workers are not root
        location="root $root; types { image/png png; text/plain txt; }"
    else
        location="location / {
            default_type application/json;
            return 200 '{\"code\":200,\"message\":\"API is healthy.\",\"data\":{}}';
        }"
    fi
    cat >"$d/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path $d/body; proxy_temp_path $d/proxy; fastcgi_temp_path $d/fcgi;
    uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
    server {
        listen 127.0.0.1:$port;
        $location
    }
}
CONF
    nginx -p "$d" -c "$d/nginx.conf" &
    BENCH_PIDS+=($!)
    local probe=/
    [ -n "$root" ] && probe=/$(ls "$root" | head -1)
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port$probe" >/dev/null && return 0; sleep 0.1; done
    echo "nginx did not start" >&2; return 1
}

# start_tandem DIR [ARGS...]: sets TANDEM_URL
start_tandem() {
    local dir=$1; shift
    local out=$BENCH_TMP/tandem.$RANDOM.out
    "$TANDEM_BIN" serve --http 127.0.0.1:0 --dir "$dir" --log-level warn "$@" >"$out" 2>"$out.err" &
    BENCH_PIDS+=($!)
    TANDEM_PID=$!
    for _ in $(seq 100); do
        if [ -s "$out" ]; then
            TANDEM_URL=$(head -1 "$out" | sed -E 's/^tandem listening on //')
            return 0
        fi
        sleep 0.05
    done
    echo "tandem did not start: $(cat "$out.err")" >&2; return 1
}

# start_tandem_slow DIR [ARGS...]: like start_tandem, but waits up to 5 minutes (a server with
# millions of events in its log rebuilds capture's dedup set before it listens); prints the
# start time
start_tandem_slow() {
    local dir=$1 out=$BENCH_TMP/tandem.$RANDOM.out t0=$(date +%s.%N)
    shift
    "$TANDEM_BIN" serve --http 127.0.0.1:0 --dir "$dir" --log-level warn "$@" >"$out" 2>"$out.err" &
    BENCH_PIDS+=($!)
    TANDEM_PID=$!
    for _ in $(seq 3000); do
        if [ -s "$out" ]; then
            TANDEM_URL=$(head -1 "$out" | sed -E 's/^tandem listening on //')
            echo "server listening after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
            return 0
        fi
        sleep 0.1
    done
    echo "tandem did not start: $(cat "$out.err")" >&2; return 1
}

stop_tandem() { # stops the last server started by start_tandem
    local pid=${BENCH_PIDS[-1]}
    peak_rss "$pid"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    unset 'BENCH_PIDS[-1]'
}

# stop_pid PID [SIGNAL]: stops one process started here and forgets it
stop_pid() {
    local pid=$1 sig=${2:-TERM} keep=() p
    peak_rss "$pid"
    kill -s "$sig" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
}

# bench_cc NAME: builds build/NAME from bench/NAME.c against the library of the CMake build
# when missing or older than its source (the data generators; the library's log registry
# names the Kafka backend, hence its libraries)
bench_cc() {
    local src=$BENCH_TOP/bench/$1.c bin=$BENCH_TOP/build/$1
    if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ] || [ "$BENCH_TOP/build/libtandem_lib.a" -nt "$bin" ]; then
        cc -O2 -std=gnu11 -I"$BENCH_TOP/src" "$src" "$BENCH_TOP/build/libtandem_lib.a" \
            -Wl,--as-needed -lrdkafka -ljansson -lsodium -lsqlite3 -lz -lcrypto -lpthread -lm -o "$bin"
    fi
}

# CPU seconds (user + system) of a process so far, from /proc/PID/stat
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"; }

# wrk_rps URL [wrk args...]: prints requests/s
wrk_rps() {
    local url=$1; shift
    wrk "$@" "$url" | awk '/^Requests\/sec:/ {print $2}'
}

# wrk_cpu PID URL [wrk args...]: prints "REQ_PER_S CPU_US_PER_REQ NON_2XX": requests/s, the CPU
# time (user + system, from /proc/PID/stat) the process PID spent per request during the run,
# and how many answers were not 2xx/3xx (wrk counts those as requests too).
# The second figure moves much less than the first with the machine's load.
wrk_cpu() {
    local pid=$1 url=$2; shift 2
    local t0 t1 out hz
    hz=$(getconf CLK_TCK)
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(wrk "$@" "$url")
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    echo "$out" | awk -v t=$((t1 - t0)) -v hz="$hz" '
        /^Requests\/sec:/ { rps = $2 }
        / requests in / { n = $1 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        END { printf "%s %.1f %d\n", rps, n ? t * 1e6 / hz / n : 0, bad }'
}

# start_clickhouse DIR MAX_MEMORY: a ClickHouse server of its own (Debian's 18.16) with its
# config and data under DIR, on free 127.0.0.1 ports; sets CH_PID, CH_TCP, CH_HTTP and
# returns once it answers (the caller defines how it queries, e.g. over CH_TCP).
start_clickhouse() {
    local ch=$1 mem=$2
    command -v clickhouse-server >/dev/null ||
        { echo "clickhouse-server missing: scripts/setup-deps.sh --bench" >&2; return 1; }
    mkdir -p "$ch"
    CH_TCP=$(free_port) CH_HTTP=$(free_port)
    cat >"$ch/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>$mem</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
        <profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
    </interval></default></quotas>
</yandex>
XML
    cat >"$ch/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>$ch/server.log</log><errorlog>$ch/server.err.log</errorlog>
        <size>100M</size><count>1</count></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$CH_TCP</tcp_port>
    <http_port>$CH_HTTP</http_port>
    <path>$ch/data/</path>
    <tmp_path>$ch/tmp/</tmp_path>
    <user_files_path>$ch/user_files/</user_files_path>
    <format_schema_path>$ch/format_schemas/</format_schema_path>
    <users_config>$ch/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>1073741824</mark_cache_size>
</yandex>
XML
    clickhouse-server --config-file="$ch/config.xml" >"$ch/stdout" 2>&1 &
    CH_PID=$!
    BENCH_PIDS+=("$CH_PID")
    for _ in $(seq 300); do
        clickhouse-client --port "$CH_TCP" -q 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "ClickHouse did not start; see $ch/server.err.log" >&2
    return 1
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
