// HTTP side of bench/ml.sh: materializes the generated rows as a data model (a warehouse
// table), trains from it by name on the server, then measures online predictions and
// tandem_predict over the table. Prints one JSON object; CPU figures are the server's
// (/proc/PID/stat, user + system, every thread). Args: URL TOKEN ROWS FEATURES ROUNDS THREADS PID.
import { readdirSync, readFileSync } from 'node:fs';

const [url, token, rows, feats, rounds, threads, pid] = process.argv.slice(2);
const cpuS = () => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 10 ms
};
// time the server's threads spent ready to run but waiting for a CPU (the scheduler's run
// queue, /proc/PID/task/TID/schedstat), summed over its threads, in s; divided by a phase's
// wall time: how many of its threads were kept waiting on average by the machine's load
const runqS = () => {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try { ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[1]); } catch { /* gone */ }
  }
  return ns / 1e9;
};
const R = Number(rows), F = Number(feats);
const M = 1000003;
const cols = [...Array(F).keys()].map((j) => `((i * ${7919 * (j + 1) + 13} + ${101 * j}) % ${M}) / ${M}.0 AS x${j + 1}`);
const gen = `SELECT i AS id, ${cols.join(', ')}, ((i * 104729 + 7) % ${M}) / ${M}.0 AS noise FROM range(${R}) t(i)`;
const query = `SELECT id, ${[...Array(F).keys()].map((j) => `x${j + 1}`).join(', ')},
  CASE WHEN 1 / (1 + exp(-(4 * x1 - 3 * x2 + 2 * x3 * x4 - 1.5))) > noise THEN 1 ELSE 0 END AS label FROM (${gen})`;
const H = { 'Content-Type': 'application/json', Authorization: token };
const post = async (path, body) => {
  const r = await fetch(`${url}${path}`, { method: 'POST', headers: H, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
};
const out = {};
const get = async (path) => (await fetch(`${url}${path}`, { headers: H })).json();
// the rows, once, as a table (not timed with the training: Python's rows are a file too)
let t0 = performance.now();
let r = await post('/api/models', { name: 'bench_data', sql: query, materialized: 'table' });
if (r.status !== 200) throw new Error(JSON.stringify(r.body));
r = await post('/api/models/bench_data/run', {});
if (r.status !== 202) throw new Error(JSON.stringify(r.body));
for (;;) {
  await new Promise((res) => setTimeout(res, 200));
  const run = (await get('/api/models/bench_data/runs?limit=5')).items.find((x) => x.id === r.body.id);
  if (run && run.status === 'success') break;
  if (run && run.status !== 'queued' && run.status !== 'running') throw new Error(JSON.stringify(run));
}
out.materializeS = (performance.now() - t0) / 1000;
let c0 = cpuS();
t0 = performance.now();
r = await post('/api/ml/models', { name: 'bench', model: 'bench_data', task: 'binary', label: 'label', key: 'id',
  validFraction: 0.2, numRounds: Number(rounds), earlyStoppingRounds: 0,
  params: { max_depth: 6, eta: 0.1, nthread: Number(threads) } });
if (r.status !== 202) throw new Error(JSON.stringify(r.body));
for (;;) {
  await new Promise((res) => setTimeout(res, 50));
  const m = await get('/api/ml/models/bench');
  const v = m.versions[0];
  if (v.status === 'ready') {
    out.trainWallS = (performance.now() - t0) / 1000;
    out.trainCpuS = cpuS() - c0;
    out.trainingMs = v.trainingMs; out.rounds = v.rounds; out.auc = v.metrics.auc; out.rows = v.rows;
    break;
  }
  if (v.status !== 'queued' && v.status !== 'training') throw new Error(JSON.stringify(v));
}
// single-row predictions, one at a time over a keep-alive connection
const row = Object.fromEntries([...Array(F).keys()].map((j) => [`x${j + 1}`, (j + 1) / (F + 1)]));
// the server's own CPU while no request comes (loader, runner and worker ticks), 3 s
c0 = cpuS();
await new Promise((res) => setTimeout(res, 3000));
out.idleCpuPct = ((cpuS() - c0) / 3) * 100;
const lat = [];
c0 = cpuS();
let q0 = runqS();
for (let i = 0; i < 3000; i++) {
  t0 = performance.now();
  r = await post('/api/ml/models/bench/predict', { rows: [row] });
  if (r.status !== 200) throw new Error(JSON.stringify(r.body));
  lat.push(performance.now() - t0);
}
lat.sort((a, b) => a - b);
out.singleP50Ms = lat[Math.floor(lat.length * 0.5)];
out.singleP99Ms = lat[Math.floor(lat.length * 0.99)];
out.singleCpuUs = ((cpuS() - c0) / lat.length) * 1e6;
out.singleWaiting = (runqS() - q0) / (lat.reduce((a, b) => a + b, 0) / 1000);
// batches of 10,000 rows
const batch = Array.from({ length: 10000 }, (_, i) => Object.fromEntries([...Array(F).keys()].map((j) => [`x${j + 1}`, ((i * (j + 3)) % 997) / 997])));
t0 = performance.now();
c0 = cpuS();
q0 = runqS();
const NB = 20;
for (let i = 0; i < NB; i++) {
  r = await post('/api/ml/models/bench/predict', { rows: batch });
  if (r.status !== 200) throw new Error(JSON.stringify(r.body));
}
out.batchRowsPerS = (NB * 10000) / ((performance.now() - t0) / 1000);
out.batchRowsPerCpuS = (NB * 10000) / (cpuS() - c0);
out.batchWaiting = (runqS() - q0) / ((performance.now() - t0) / 1000);
// tandem_predict over the generated table, beside the same scan without it
const xs = [...Array(F).keys()].map((j) => `x${j + 1}`).join(', ');
const sqlMs = async (q) => {
  const a = await post('/api/warehouse/sql', { query: q });
  if (a.status !== 200) throw new Error(JSON.stringify(a.body));
  return a.body.elapsedMs;
};
out.sqlScanMs = await sqlMs(`SELECT sum(x1 + x${F}) FROM bench_data`);
c0 = cpuS();
q0 = runqS();
out.sqlPredictMs = await sqlMs(`SELECT sum(tandem_predict('bench', ${xs})) FROM bench_data`);
out.sqlPredictCpuS = cpuS() - c0;
out.sqlPredictWaiting = (runqS() - q0) / (out.sqlPredictMs / 1000);
out.predictRowsPerS = R / (out.sqlPredictMs / 1000);
// the server's peak resident memory over the whole run
out.peakRssMiB = Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/)[1]) / 1024;
console.log(JSON.stringify(out));
