// The timed part of bench/insights.sh (node >= 18, no packages): tandem and ClickHouse asked
// the same questions alternately, so both see the same load on the shared machine.
//
//   node bench/insights.mjs TANDEM_URL|- RUNS
//   env: SU_EMAIL, SU_PASSWORD (tandem superuser), TANDEM_PID (its CPU is read from /proc),
//        CH_URL (ClickHouse's HTTP interface), CH_PID, CH_SQL (a file of "question<TAB>SQL"
//        lines), INSIGHTS_ROUTES ("api sql" by default: which tandem routes to time)
//
// RUNS + 1 rounds; each round asks every question once of every engine: the insights API
// ("tandem"), the same question as plain DuckDB SQL through /api/warehouse/sql ("duckdb-sql",
// persons resolved in SQL as docs/analytics.md says) and ClickHouse ("clickhouse", the SQL of
// bench/insights.sh through its HTTP interface). Round 0 is reported as "first" (the first
// query after loading), the median of the other RUNS as "warm"; with the server's CPU time
// (user + system of the whole process, /proc/PID/stat) for the query, which moves much less
// with the other load on the machine than the wall time does. Prints per engine and question:
//   RESULT <engine> <question> <first ms> <warm median ms> <warm median CPU ms>
//   ANSWER <engine> <question> <normalized answer>
// the answers in the form bench/insights.sh compares across engines:
//   dau:       the 30 daily counts, space separated;
//   funnel:    the 4 cumulative step counts;
//   retention: "cohort:k:count" for every cohort and k, cohort-major.
// The dates are those of bench/insights_gen.c's data set.
import { readFileSync } from 'node:fs';

const [url, runsArg] = process.argv.slice(2);
const RUNS = Number(runsArg || 5);

const D = {
  trendsFrom: '2026-10-17', trendsTo: '2026-11-15',
  funnelFrom: '2026-09-07', funnelTo: '2026-11-15',
  retentionTo: '2026-11-15', retentionFrom: '2026-09-21', weeks: 8,
};

const HZ = 100; // USER_HZ: /proc/PID/stat counts CPU in 1/100 s on Linux
function cpuMs(pid) {
  if (!pid) return 0;
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const v = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return ((Number(v[11]) + Number(v[12])) * 1000) / HZ; // utime + stime
}

async function signIn() {
  const r = await fetch(`${url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ identity: process.env.SU_EMAIL, password: process.env.SU_PASSWORD }),
  });
  if (r.status !== 200) throw new Error(`sign-in: ${r.status} ${await r.text()}`);
  return (await r.json()).token;
}

const token = url !== '-' ? await signIn() : null;
const tandemPid = Number(process.env.TANDEM_PID || 0);
const chPid = Number(process.env.CH_PID || 0);

async function timed(pid, fn) {
  const c0 = cpuMs(pid);
  const t0 = performance.now();
  const answer = await fn();
  const ms = performance.now() - t0;
  return { ms, cpu: cpuMs(pid) - c0, answer };
}

async function post(path, body) {
  const r = await fetch(`${url}${path}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: token },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${text.slice(0, 500)}`);
  return JSON.parse(text);
}

async function clickhouse(sql) {
  const r = await fetch(`${process.env.CH_URL}/?max_execution_time=900`, { method: 'POST', body: `${sql} FORMAT TabSeparated` });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`clickhouse: ${r.status} ${text.slice(0, 500)}`);
  return text;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// --- the insights API
const trends = {
  series: [{ event: null, math: 'dau' }], interval: 'day',
  dateFrom: D.trendsFrom, dateTo: D.trendsTo, timezone: 'UTC',
};
const funnel = {
  steps: [{ event: 'signup' }, { event: 'activate' }, { event: 'purchase' }, { event: 'invite' }],
  funnelWindow: 14, funnelWindowUnit: 'day', funnelOrder: 'ordered',
  dateFrom: D.funnelFrom, dateTo: D.funnelTo, timezone: 'UTC',
};
const retention = {
  targetEvent: { event: 'pageview' }, returningEvent: { event: 'pageview' },
  retentionType: 'recurring', period: 'week', totalIntervals: D.weeks,
  dateTo: D.retentionTo, timezone: 'UTC',
};

// --- the same questions as plain DuckDB SQL (the warehouse's `events` table)
// persons: docs/analytics.md "The actor": anonymous_id -> user_id (and alias previous_id ->
// user_id), earliest link by (timestamp, log_offset), one level.
const persons = `
links AS (
  SELECT did, arg_min(uid, k) AS uid FROM (
    SELECT anonymous_id AS did, user_id AS uid, ("timestamp", log_offset) AS k FROM events
     WHERE user_id IS NOT NULL AND anonymous_id IS NOT NULL AND anonymous_id <> user_id
    UNION ALL
    SELECT previous_id, user_id, ("timestamp", log_offset) FROM events
     WHERE type = 'alias' AND previous_id IS NOT NULL AND user_id IS NOT NULL AND previous_id <> user_id)
  GROUP BY did),
ev AS (
  SELECT e."timestamp" AS ts, e.event, coalesce(l.uid, coalesce(e.user_id, e.anonymous_id)) AS person
    FROM events e LEFT JOIN links l ON l.did = coalesce(e.user_id, e.anonymous_id))`;

const sqlDau = `WITH ${persons}
SELECT ts::DATE AS d, count(DISTINCT person) AS n FROM ev
 WHERE ts >= DATE '${D.trendsFrom}' AND ts < DATE '${D.trendsTo}' + INTERVAL 1 DAY
 GROUP BY d ORDER BY d`;

const inFunnel = `ts >= DATE '${D.funnelFrom}' AND ts < DATE '${D.funnelTo}' + INTERVAL 1 DAY`;
const sqlFunnel = `WITH ${persons},
s0 AS (SELECT person, ts AS t0 FROM ev WHERE event = 'signup' AND ${inFunnel}),
s1 AS (SELECT person, ts FROM ev WHERE event = 'activate' AND ${inFunnel}),
s2 AS (SELECT person, ts FROM ev WHERE event = 'purchase' AND ${inFunnel}),
s3 AS (SELECT person, ts FROM ev WHERE event = 'invite' AND ${inFunnel}),
a AS (SELECT s0.person, s0.t0, CASE WHEN s1.ts <= s0.t0 + INTERVAL 14 DAY THEN s1.ts END AS t1
        FROM s0 ASOF LEFT JOIN s1 ON s1.person = s0.person AND s1.ts > s0.t0),
b AS (SELECT a.*, CASE WHEN s2.ts <= a.t0 + INTERVAL 14 DAY THEN s2.ts END AS t2
        FROM a ASOF LEFT JOIN s2 ON s2.person = a.person AND s2.ts > a.t1),
c AS (SELECT b.*, CASE WHEN s3.ts <= b.t0 + INTERVAL 14 DAY THEN s3.ts END AS t3
        FROM b ASOF LEFT JOIN s3 ON s3.person = b.person AND s3.ts > b.t2),
f AS (SELECT person, max(1 + (t1 IS NOT NULL)::INT + (t2 IS NOT NULL)::INT + (t3 IS NOT NULL)::INT) AS lvl
        FROM c GROUP BY person)
SELECT count(*) FILTER (WHERE lvl >= 1), count(*) FILTER (WHERE lvl >= 2),
       count(*) FILTER (WHERE lvl >= 3), count(*) FILTER (WHERE lvl >= 4) FROM f`;

const inRet = `ts >= DATE '${D.retentionFrom}' AND ts < DATE '${D.retentionTo}' + INTERVAL 1 DAY`;
const week = `date_diff('week', DATE '${D.retentionFrom}', date_trunc('week', ts))`;
const sqlRetention = `WITH ${persons},
t AS (SELECT DISTINCT person, ${week} AS w FROM ev WHERE event = 'pageview' AND ${inRet}),
r AS (SELECT DISTINCT person, ${week} AS w FROM ev WHERE event = 'pageview' AND ${inRet}),
v AS (SELECT w AS cohort, 0 AS k, count(*) AS n FROM t GROUP BY w
      UNION ALL
      SELECT t.w, r.w - t.w, count(*) FROM t JOIN r ON r.person = t.person AND r.w > t.w GROUP BY t.w, r.w)
SELECT cohort, k, n FROM v ORDER BY cohort, k`;

const routes = (process.env.INSIGHTS_ROUTES || 'api sql').split(' ');
const rows = (j) => {
  if (j.truncated) throw new Error('SQL answer truncated');
  return j.rows;
};
const W = 8;
const chNormalize = {
  dau: (t) => t.trim().split('\n').map((l) => l.split('\t')[1]).join(' '),
  funnel: (t) => t.trim().split('\t').join(' '),
  // one array per cohort i: [size, returns in i+1, ...]; the last has a dummy second cell
  retention: (t) => t.trim().split('\t').flatMap((a, i) => JSON.parse(a).slice(0, W - i).map((n, k) => `${i}:${k}:${n}`)).join(' '),
};
const chSql = process.env.CH_SQL
  ? Object.fromEntries(readFileSync(process.env.CH_SQL, 'utf8').trim().split('\n').map((l) => l.split('\t')))
  : {};

// engine -> question -> () => normalized answer
const engines = {};
if (url !== '-' && routes.includes('api')) {
  engines.tandem = {
    dau: async () => (await post('/api/insights/trends', trends)).results[0].data.join(' '),
    funnel: async () => (await post('/api/insights/funnel', funnel)).results[0].steps.map((s) => s.count).join(' '),
    retention: async () => (await post('/api/insights/retention', retention)).results
      .flatMap((c, i) => c.values.map((v, k) => `${i}:${k}:${v.count}`)).join(' '),
  };
}
if (url !== '-' && routes.includes('sql')) {
  engines['duckdb-sql'] = {
    dau: async () => rows(await post('/api/warehouse/sql', { query: sqlDau })).map((r) => r[1]).join(' '),
    funnel: async () => rows(await post('/api/warehouse/sql', { query: sqlFunnel }))[0].join(' '),
    retention: async () => rows(await post('/api/warehouse/sql', { query: sqlRetention }))
      .map((r) => `${r[0]}:${r[1]}:${r[2]}`).join(' '),
  };
}
if (process.env.CH_URL) {
  engines.clickhouse = Object.fromEntries(Object.entries(chNormalize).map(([q, norm]) => [q, async () => norm(await clickhouse(chSql[q]))]));
}
const pidOf = (engine) => (engine === 'clickhouse' ? chPid : tandemPid);

const runs = {}; // "engine question" -> [{ms, cpu}]
const answers = {};
for (let round = 0; round <= RUNS; round++) {
  for (const q of ['dau', 'funnel', 'retention']) {
    for (const [engine, ask] of Object.entries(engines)) {
      const k = `${engine} ${q}`;
      const r = await timed(pidOf(engine), ask[q]);
      if (k in answers && answers[k] !== r.answer) throw new Error(`${k}: answers differ between runs`);
      answers[k] = r.answer;
      (runs[k] ||= []).push(r);
    }
  }
}
for (const [k, rs] of Object.entries(runs)) {
  const warm = rs.slice(1);
  const m = (f) => (warm.length ? median(warm.map(f)) : NaN);
  console.log(`RESULT ${k} ${rs[0].ms.toFixed(1)} ${m((r) => r.ms).toFixed(1)} ${m((r) => r.cpu).toFixed(0)}`);
  console.log(`ANSWER ${k} ${answers[k]}`);
}
