#!/usr/bin/env bash
# Product insights on EVENTS (default 10,000,000) generated events of EVENTS/10 users over 10
# weeks (bench/insights_gen.c), the same three questions in tandem, ClickHouse 18.16 and
# PostgreSQL 15, one engine after the other on the same data in the same run:
#   dau        trends, unique persons per day, 30 days (2026-10-17 .. 2026-11-15);
#   funnel     signup -> activate -> purchase -> invite, 14-day window, 10 weeks;
#   retention  recurring pageview -> pageview, 8 weeks (cohorts from 2026-09-21).
# Each question runs RUNS + 1 times (default RUNS=5; PostgreSQL PG_RUNS + 1, default 2): the
# first run ("first") and the median of the others ("warm"), in ms as the client sees it, and
# the CPU time the server spent on it (user + system from /proc, the figure that moves least
# with the other load on a shared machine). tandem and ClickHouse run side by side and are
# asked alternately (bench/insights.mjs), so their ratio is taken under the same load;
# PostgreSQL, far slower, runs first on its own. Target: every insight <= 1 s in tandem and
# no slower than ClickHouse. The script checks that the engines give the same answers.
#
# tandem: the generator writes the events into a fresh data directory's log; the server
# starts on it and the loader moves them into DuckDB (timed, like bench/pipeline.sh); then
# bench/insights.mjs asks the insights API, and the same questions as plain DuckDB SQL through
# /api/warehouse/sql. ClickHouse and PostgreSQL get the same events (persons already
# resolved) from a TSV file, each its own server on free 127.0.0.1 ports with its files in
# the run's temporary directory, stopped by PID before the next engine starts.
#
# ENGINES="clickhouse postgres tandem" picks engines; STEP_LIMIT (default 900) bounds every
# step in seconds (loading, each query). Needs clickhouse-server, clickhouse-client and
# postgresql (scripts/setup-deps.sh --bench) and the CMake build.
source "$(dirname "$0")/lib.sh"
EVENTS=${EVENTS:-10000000}
RUNS=${RUNS:-5}
PG_RUNS=${PG_RUNS:-2} # PostgreSQL takes seconds per question: fewer warm runs
ENGINES=${ENGINES:-clickhouse postgres tandem}
STEP_LIMIT=${STEP_LIMIT:-900}
export SU_EMAIL=bench@example.com SU_PASSWORD=bench-password-123

# the dates of insights_gen's data set
DAU_FROM=2026-10-17 DAU_TO=2026-11-16 # [from, to)
FUN_FROM=2026-09-07 FUN_TO=2026-11-16
RET_FROM=2026-09-21 RET_TO=2026-11-16 WEEKS=8

OUT=$BENCH_TMP/results # RESULT / ANSWER / LOAD lines of every engine
: >"$OUT"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# median_of: the median of the numbers on stdin, one per line
median_of() { sort -g | awk '{ v[NR] = $1 } END { printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# record ENGINE QUESTION ANSWER TIMES...: the first time and the median of the others
record() {
    local engine=$1 q=$2 answer=$3 first med
    shift 3
    first=$1
    shift
    med=$(printf '%s\n' "$@" | median_of)
    printf 'RESULT %s %s %.1f %s %s\n' "$engine" "$q" "$first" "$med" "$PG_CPU" >>"$OUT"
    echo "ANSWER $engine $q $answer" >>"$OUT"
}

bench_cc insights_gen
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
tsv=$BENCH_TMP/events.tsv
tdir=$BENCH_TMP/tandem
log_arg=()
case " $ENGINES " in *" tandem "*) log_arg=("$tdir") ;; esac
t0=$(now)
gen=$(timeout "$STEP_LIMIT" "$BENCH_TOP/build/insights_gen" "$EVENTS" "$tsv" "${log_arg[@]}")
echo "$gen" | sed 's/^/insights_gen: /'
N=$(echo "$gen" | awk '$1 == "events" { print $2 }')
echo "generated $N events in $(since "$t0") s (TSV $(du -h "$tsv" | cut -f1))"

# ---------------------------------------------------------------------- PostgreSQL 15
pg_queries() { # QUESTION<TAB>SQL lines; each answer is one row in the normalized form
    printf 'dau\tSELECT string_agg(n::text, '"' '"' ORDER BY d) FROM (SELECT date_trunc('"'day'"', ts) AS d, count(DISTINCT person_id) AS n FROM events WHERE ts >= '"'%s'"' AND ts < '"'%s'"' GROUP BY 1) x\n' "$DAU_FROM" "$DAU_TO"
    # the furthest step of each chain started by a signup: the earliest next step after the
    # previous one within 14 days of the signup (an index probe each), then per person the best
    local lat="" s prev=s0.t0 n=1 ev
    for ev in activate purchase invite; do
        lat="$lat LEFT JOIN LATERAL (SELECT min(e.ts) AS t$n FROM events e WHERE e.event = '$ev' AND e.person_id = s0.person_id AND e.ts > $prev AND e.ts <= s0.t0 + interval '14 days' AND e.ts < '$FUN_TO') x$n ON true"
        prev=x$n.t$n
        n=$((n + 1))
    done
    printf 'funnel\tWITH s0 AS (SELECT person_id, ts AS t0 FROM events WHERE event = '"'signup'"' AND ts >= '"'%s'"' AND ts < '"'%s'"'), f AS (SELECT s0.person_id, max(CASE WHEN x3.t3 IS NOT NULL THEN 4 WHEN x2.t2 IS NOT NULL THEN 3 WHEN x1.t1 IS NOT NULL THEN 2 ELSE 1 END) AS lvl FROM s0%s GROUP BY s0.person_id) SELECT concat_ws('"' '"', count(*) FILTER (WHERE lvl >= 1), count(*) FILTER (WHERE lvl >= 2), count(*) FILTER (WHERE lvl >= 3), count(*) FILTER (WHERE lvl >= 4)) FROM f\n' "$FUN_FROM" "$FUN_TO" "$lat"
    local wk="(date_trunc('week', ts)::date - date '$RET_FROM') / 7"
    printf 'retention\tWITH t AS (SELECT DISTINCT person_id, %s AS w FROM events WHERE event = '"'pageview'"' AND ts >= '"'%s'"' AND ts < '"'%s'"'), r AS (SELECT DISTINCT person_id, %s AS w FROM events WHERE event = '"'pageview'"' AND ts >= '"'%s'"' AND ts < '"'%s'"'), v AS (SELECT w AS cohort, 0 AS k, count(*) AS n FROM t GROUP BY w UNION ALL SELECT t.w, r.w - t.w, count(*) FROM t JOIN r ON r.person_id = t.person_id AND r.w > t.w GROUP BY t.w, r.w) SELECT string_agg(cohort || '"':'"' || k || '"':'"' || n, '"' '"' ORDER BY cohort, k) FROM v\n' "$wk" "$RET_FROM" "$RET_TO" "$wk" "$RET_FROM" "$RET_TO"
}

if [[ " $ENGINES " == *" postgres "* ]]; then
    PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
    [ -x "$PG_BIN/postgres" ] || { echo "PostgreSQL missing: scripts/setup-deps.sh --bench" >&2; exit 1; }
    pg=$BENCH_TMP/postgres
    mkdir -p "$pg"
    as_pg=()
    if [ "$(id -u)" = 0 ]; then # postgres refuses to run as root: its files belong to postgres
        chmod 711 "$BENCH_TMP"
        chown postgres: "$pg"
        as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
    fi
    port=$(free_port)
    "${as_pg[@]}" "$PG_BIN/initdb" -D "$pg/data" -U bench --auth=trust -E UTF8 --locale=C >"$pg/initdb.log"
    # memory for a 24 GiB machine; fsync off only makes the load faster (queries read)
    "${as_pg[@]}" "$PG_BIN/postgres" -D "$pg/data" -p "$port" -k "$pg" -c listen_addresses=127.0.0.1 \
        -c shared_buffers=2GB -c work_mem=256MB -c maintenance_work_mem=1GB -c fsync=off \
        -c statement_timeout="${STEP_LIMIT}s" >"$pg/server.log" 2>&1 &
    PG_PID=$!
    BENCH_PIDS+=("$PG_PID")
    pgq() { timeout "$STEP_LIMIT" psql -h "$pg" -p "$port" -U bench -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
    for _ in $(seq 300); do pgq -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
    echo "$(pgq -A -t -c 'SELECT version()' | cut -d' ' -f1-2) on 127.0.0.1:$port (pid $PG_PID)"
    # CPU ms of the server and all its processes: the postmaster's own and its exited children's
    # (backends, parallel workers) plus the running children's
    pg_cpu() {
        { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pm="$PG_PID" -v hz="$(getconf CLK_TCK)" '
            { pid = $1; sub(/^.*\) /, "") } # then $2 is the parent, $12-$15 utime stime cutime cstime
            $2 == pm { t += $12 + $13 }
            pid == pm { t += $12 + $13 + $14 + $15 }
            END { printf "%.0f\n", t * 1000 / hz }'
    }
    t0=$(now)
    pgq -c 'CREATE TABLE events (ts timestamp NOT NULL, event text NOT NULL, person_id text NOT NULL)'
    pgq -c "\\copy events FROM '$tsv'"
    pgq -c 'CREATE INDEX events_event_person_ts ON events (event, person_id, ts)' \
        -c 'CREATE INDEX events_ts ON events (ts)' -c 'ANALYZE events'
    echo "LOAD postgres $(since "$t0") s (COPY, two indexes, ANALYZE), $(pgq -A -t -c 'SELECT count(*) FROM events') rows" | tee -a "$OUT"
    while IFS=$'\t' read -r q sql; do
        { echo '\timing on'; for i in $(seq 0 "$PG_RUNS"); do echo "$sql;"; done; } >"$pg/q.sql"
        c0=$(pg_cpu)
        pgq -A -t -f "$pg/q.sql" >"$pg/q.out"
        c1=$(pg_cpu)
        mapfile -t times < <(awk '/^Time: / { print $2 }' "$pg/q.out")
        PG_CPU=$(awk -v a="$c0" -v b="$c1" -v n=$((PG_RUNS + 1)) 'BEGIN { printf "%.0f", (b - a) / n }')
        record postgres "$q" "$(grep -v '^Time: ' "$pg/q.out" | tail -1)" "${times[@]}"
    done < <(pg_queries)
    echo "postgres data: $(du -sh "$pg/data" | cut -f1)"
    stop_pid "$PG_PID" INT # fast shutdown
fi

# ---------------------------------------------------------------------- ClickHouse 18.16
ch_queries() { # QUESTION<TAB>SQL lines
    printf 'dau\tSELECT toDate(ts) AS d, uniqExact(person_id) FROM events WHERE ts >= toDateTime('"'%s 00:00:00'"') AND ts < toDateTime('"'%s 00:00:00'"') GROUP BY d ORDER BY d\n' "$DAU_FROM" "$DAU_TO"
    printf 'funnel\tSELECT countIf(l >= 1), countIf(l >= 2), countIf(l >= 3), countIf(l >= 4) FROM (SELECT person_id, windowFunnel(1209600)(ts, event = '"'signup'"', event = '"'activate'"', event = '"'purchase'"', event = '"'invite'"') AS l FROM events WHERE event IN ('"'signup', 'activate', 'purchase', 'invite'"') AND ts >= toDateTime('"'%s 00:00:00'"') AND ts < toDateTime('"'%s 00:00:00'"') GROUP BY person_id)\n' "$FUN_FROM" "$FUN_TO"
    # retention(c1, ..., cN) per person: r[1] = c1, r[k] = c1 AND ck; one array per cohort week i
    # (target in week i, returning in week i + k); the last cohort gets a never-true second
    # condition since retention takes two conditions at least
    local i j sums="" arrays="" conds
    for i in $(seq 0 $((WEEKS - 1))); do
        conds="event = 'pageview' AND w = $i"
        for j in $(seq $((i + 1)) $((WEEKS - 1))); do conds="$conds, event = 'pageview' AND w = $j"; done
        [ "$i" = $((WEEKS - 1)) ] && conds="$conds, w = $WEEKS"
        arrays="$arrays, retention($conds) AS r$i"
        sums="$sums${sums:+, }sumForEach(r$i)"
    done
    printf 'retention\tSELECT %s FROM (SELECT person_id%s FROM (SELECT person_id, event, toRelativeWeekNum(ts) - toRelativeWeekNum(toDateTime('"'%s 00:00:00'"')) AS w FROM events WHERE event = '"'pageview'"' AND ts >= toDateTime('"'%s 00:00:00'"') AND ts < toDateTime('"'%s 00:00:00'"')) GROUP BY person_id)\n' "$sums" "$arrays" "$RET_FROM" "$RET_FROM" "$RET_TO"
}


if [[ " $ENGINES " == *" clickhouse "* ]]; then
    ch=$BENCH_TMP/clickhouse
    start_clickhouse "$ch" 8000000000
    tcp=$CH_TCP http=$CH_HTTP
    chq() { timeout "$STEP_LIMIT" clickhouse-client --port "$tcp" --max_execution_time "$STEP_LIMIT" "$@"; }
    echo "ClickHouse $(chq -q 'SELECT version()') on 127.0.0.1:$tcp (pid $CH_PID)"
    # PostHog's sharded_events order: date, event, then the person
    chq -q "CREATE TABLE events (ts DateTime, event String, person_id String)
            ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (toDate(ts), event, person_id)"
    t0=$(now)
    chq -q 'INSERT INTO events FORMAT TabSeparated' <"$tsv"
    chq -q 'OPTIMIZE TABLE events FINAL'
    echo "LOAD clickhouse $(since "$t0") s (INSERT of the TSV + OPTIMIZE FINAL), $(chq -q 'SELECT count() FROM events') rows" | tee -a "$OUT"
    ch_queries >"$ch/queries.tsv"
    export CH_URL=http://127.0.0.1:$http CH_PID CH_SQL=$ch/queries.tsv
fi

# ---------------------------------------------------------------------- tandem
if [[ " $ENGINES " == *" tandem "* ]]; then
    "$TANDEM_BIN" superuser upsert "$SU_EMAIL" "$SU_PASSWORD" --dir "$tdir" >/dev/null
    t0=$(now)
    start_tandem_slow "$tdir" --sql-timeout "${STEP_LIMIT}s"
    timeout "$STEP_LIMIT" node "$BENCH_TOP/bench/pipeline.mjs" load "$TANDEM_URL" "$N"
    echo "LOAD tandem $(since "$t0") s (server start + loader until every event is committed)" | tee -a "$OUT"
    export TANDEM_PID
else
    TANDEM_URL=-
fi

# ---------------------------------------------------------------------- tandem and ClickHouse, alternately
if [ "$TANDEM_URL" != - ] || [ -n "${CH_URL:-}" ]; then
    echo "asking tandem and ClickHouse alternately, $((RUNS + 1)) rounds (load $(cut -d' ' -f1 /proc/loadavg))"
    timeout "$((STEP_LIMIT * 6))" node "$BENCH_TOP/bench/insights.mjs" "$TANDEM_URL" "$RUNS" >>"$OUT"
    echo "load after: $(cut -d' ' -f1 /proc/loadavg)"
fi
if [ "$TANDEM_URL" != - ]; then
    stop_pid "$TANDEM_PID"
    echo "tandem warehouse: $(du -h "$tdir/warehouse.duckdb" | cut -f1), log: $(du -sh "$tdir/log" | cut -f1)"
fi
if [ -n "${CH_URL:-}" ]; then
    echo "clickhouse data: $(du -sh "$ch/data" | cut -f1)"
    stop_pid "$CH_PID"
fi

# ---------------------------------------------------------------------- report
echo
echo "== $N events, $((EVENTS / 10)) users. Each cell: first run / median of $RUNS warm runs, ms as the client sees it, (server CPU ms of a warm run; PostgreSQL: $PG_RUNS warm runs, CPU the average over all its runs)"
awk '
    $1 == "RESULT" { first[$2, $3] = $4; warm[$2, $3] = $5; cpu[$2, $3] = $6 }
    function cell(e, q) { return ((e, q) in warm) ? sprintf("%s / %s (%s)", first[e, q], warm[e, q], cpu[e, q]) : "-" }
    END {
        printf "| insight | tandem | ClickHouse 18.16 | PostgreSQL 15 | DuckDB SQL via /api/warehouse/sql | tandem / ClickHouse, warm wall (CPU) | target met (<= 1 s, <= ClickHouse) |\n"
        printf "|---|---|---|---|---|---|---|\n"
        split("dau funnel retention", qs, " ")
        for (i = 1; i <= 3; i++) {
            q = qs[i]
            r = "-"; met = "-"
            if ((("tandem", q) in warm) && (("clickhouse", q) in warm)) {
                r = sprintf("%.2f (%.2f)", warm["tandem", q] / warm["clickhouse", q], cpu["clickhouse", q] ? cpu["tandem", q] / cpu["clickhouse", q] : 0)
                met = (warm["tandem", q] <= 1000 && warm["tandem", q] <= warm["clickhouse", q]) ? "yes" : "**no**"
            } else if (("tandem", q) in warm)
                met = warm["tandem", q] <= 1000 ? "<= 1 s: yes" : "**no**"
            printf "| %s | %s | %s | %s | %s | %s | %s |\n", q, cell("tandem", q), cell("clickhouse", q),
                cell("postgres", q), cell("duckdb-sql", q), r, met
        }
    }' "$OUT"
grep '^LOAD' "$OUT" | sed 's/^LOAD /loading: /'

echo
echo "== answers (zero counts left out; every engine must agree)"
# the answer of each engine with "i:k:0" retention cells dropped (SQL joins leave them out)
awk '$1 == "ANSWER" { a = ""; for (i = 4; i <= NF; i++) if ($i !~ /:0$/) a = a (a == "" ? "" : " ") $i; print $2, $3, a }' "$OUT" >"$BENCH_TMP/answers"
status=0
for q in dau funnel retention; do
    distinct=$(awk -v q="$q" '$2 == q { $1 = $2 = ""; print }' "$BENCH_TMP/answers" | sort -u | wc -l)
    awk -v q="$q" '$2 == q {
        if (q == "dau") { s = 0; for (i = 3; i <= NF; i++) s += $i; printf "%-11s %-10s DAU sum %d over %d days\n", $1, q, s, NF - 2 }
        else if (q == "funnel") printf "%-11s %-10s steps %s %s %s %s\n", $1, q, $3, $4, $5, $6
        else { c = ""; for (i = 3; i <= NF; i++) { split($i, p, ":"); if (p[2] == 0) c = c " " p[3] }
               printf "%-11s %-10s cohort sizes%s\n", $1, q, c } }' "$BENCH_TMP/answers"
    if [ "$distinct" -gt 1 ]; then
        echo "MISMATCH: the engines disagree on $q"
        status=1
    elif [ "$distinct" = 1 ]; then
        echo "$q: all engines agree"
    fi
done
exit $status
