#!/usr/bin/env bash
# ML benchmark (docs/ml.md): training on ROWS x FEATURES rows of a warehouse query beside
# Python's xgboost 1.7.4 (Debian) with the same parameters, split and threads, in the same run;
# online predictions over HTTP (single-row latency, 10k-row batches); tandem_predict in SQL.
# Targets (issue 17): tandem's training wall time <= 1.2x Python's including data loading;
# single-row p99 < 2 ms; >= 50k rows/s in batches; tandem_predict >= 1M rows/s.
# Usage: bench/ml.sh   (ROWS=1000000 FEATURES=20 ROUNDS=100 THREADS=2 by default)
source "$(dirname "$0")/lib.sh"

ROWS=${ROWS:-1000000}
FEATURES=${FEATURES:-20}
ROUNDS=${ROUNDS:-100}
THREADS=${THREADS:-2}

echo "ml: $ROWS rows x $FEATURES features, $ROUNDS rounds, $THREADS threads; load: $(cut -d' ' -f1-3 /proc/loadavg)"
dir=$BENCH_TMP/data
"$TANDEM_BIN" superuser upsert bench@example.com benchpassword123 --dir "$dir" >/dev/null
start_tandem "$dir" --sql-timeout 3600s --sql-max-rows 10 --ml-threads "$THREADS"
token=$(curl -sf -H 'Content-Type: application/json' \
    -d '{"identity":"bench@example.com","password":"benchpassword123"}' \
    "$TANDEM_URL/api/collections/_superusers/auth-with-password" | jq -r .token)

/usr/bin/python3 "$BENCH_TOP/bench/ml_ref.py" gen "$ROWS" "$FEATURES" "$BENCH_TMP/data.npz"
py=$(/usr/bin/python3 "$BENCH_TOP/bench/ml_ref.py" train "$BENCH_TMP/data.npz" "$ROUNDS" "$THREADS")
td=$(node "$BENCH_TOP/bench/ml.mjs" "$TANDEM_URL" "$token" "$ROWS" "$FEATURES" "$ROUNDS" "$THREADS" "$TANDEM_PID")
echo "python: $py"
echo "tandem: $td"
jq -rn --argjson p "$py" --argjson t "$td" '
  def r2: . * 100 | round / 100;
  "rows as a table (data model run, not in the ratio): \($t.materializeS | r2) s",
  "training wall time: tandem \($t.trainWallS | r2) s (POST to ready: read the table + train), python \($p.totalS | r2) s (load \($p.loadS | r2) s + train): ratio \(($t.trainWallS / $p.totalS) | r2) (target <= 1.2)",
  "training CPU: tandem \($t.trainCpuS | r2) s, python \($p.cpuS | r2) s: ratio \(($t.trainCpuS / $p.cpuS) | r2)",
  "single-row predict over HTTP: p50 \($t.singleP50Ms | . * 1000 | round / 1000) ms, p99 \($t.singleP99Ms | . * 1000 | round / 1000) ms (target < 2); server CPU \($t.singleCpuUs | round) us a request, \($t.singleWaiting | r2) of its threads waiting for a CPU on average (idle server: \($t.idleCpuPct | round) % of a core)",
  "batches of 10k rows: \($t.batchRowsPerS | round) rows/s (target >= 50000); \($t.batchRowsPerCpuS | round) rows per server CPU-second; \($t.batchWaiting | r2) of its threads waiting for a CPU on average",
  "tandem_predict: \($t.predictRowsPerS | round) rows/s (\($t.sqlPredictMs) ms, \($t.sqlPredictCpuS | r2) s CPU, \($t.sqlPredictWaiting | r2) of its threads waiting for a CPU on average; the same scan without it \($t.sqlScanMs) ms) (target >= 1000000)",
  "server peak RSS (VmHWM): \($t.peakRssMiB | round) MiB"'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
