#!/usr/bin/env bash
# GET /api/health against nginx `return 200` under the same wrk load, in the same run.
# Each server is measured ROUNDS times, alternating, and the best round is kept for both.
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
WRK_ARGS=(-t2 -c64 -d"$DURATION")

nport=$(free_port)
start_nginx "$nport"
start_tandem "$BENCH_TMP/data"

best_n=0 best_t=0
for r in $(seq "$ROUNDS"); do
    n=$(wrk_rps "http://127.0.0.1:$nport/" "${WRK_ARGS[@]}")
    t=$(wrk_rps "$TANDEM_URL/api/health" "${WRK_ARGS[@]}")
    echo "round $r: nginx $n req/s, tandem /api/health $t req/s"
    best_n=$(awk -v a="$best_n" -v b="$n" 'BEGIN{print (b>a)?b:a}')
    best_t=$(awk -v a="$best_t" -v b="$t" 'BEGIN{print (b>a)?b:a}')
done
echo "http: nginx return-200 $best_n req/s; tandem /api/health $best_t req/s; ratio $(ratio "$best_t" "$best_n") (target >= 80%)"
