// The tandem side of bench/insights.sh (node >= 18, no packages).
//
//   node bench/insights.mjs URL RUNS
//
// Signs in as SU_EMAIL / SU_PASSWORD, then runs each question RUNS + 1 times back to back:
// the first run is reported as "cold" (the first query after loading), the median of the
// other RUNS as "warm". Each question is asked twice, through the insights API and as plain
// DuckDB SQL through /api/warehouse/sql (persons resolved in SQL as docs/analytics.md says).
// Prints, per question and route:
//   RESULT <engine> <question> <cold ms> <warm median ms>
//   ANSWER <engine> <question> <normalized answer>
// with engine "tandem" (the API) or "duckdb-sql", and the answers in the same normalized form
// bench/insights.sh makes of ClickHouse's and PostgreSQL's:
//   dau:       the 30 daily counts, space separated;
//   funnel:    the 4 cumulative step counts;
//   retention: "cohort:k:count" for every cohort and k, cohort-major.
// The dates are those of bench/insights_gen.c's data set.
const [url, runsArg] = process.argv.slice(2);
const RUNS = Number(runsArg || 5);

const D = {
  trendsFrom: '2026-10-17', trendsTo: '2026-11-15',
  funnelFrom: '2026-09-07', funnelTo: '2026-11-15',
  retentionTo: '2026-11-15', retentionFrom: '2026-09-21', weeks: 8,
};

async function signIn() {
  const r = await fetch(`${url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ identity: process.env.SU_EMAIL, password: process.env.SU_PASSWORD }),
  });
  if (r.status !== 200) throw new Error(`sign-in: ${r.status} ${await r.text()}`);
  return (await r.json()).token;
}

const token = await signIn();

async function post(path, body) {
  const t0 = performance.now();
  const r = await fetch(`${url}${path}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: token },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  const ms = performance.now() - t0;
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${text.slice(0, 500)}`);
  return { ms, json: JSON.parse(text) };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function measure(engine, question, path, body, normalize) {
  const times = [];
  let answer = null;
  for (let i = 0; i <= RUNS; i++) {
    const { ms, json } = await post(path, body);
    times.push(ms);
    const a = normalize(json);
    if (answer !== null && a !== answer) throw new Error(`${engine} ${question}: answers differ between runs`);
    answer = a;
  }
  console.log(`RESULT ${engine} ${question} ${times[0].toFixed(1)} ${median(times.slice(1)).toFixed(1)}`);
  console.log(`ANSWER ${engine} ${question} ${answer}`);
}

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

const api = process.env.INSIGHTS_ROUTES ? process.env.INSIGHTS_ROUTES.split(' ') : ['api', 'sql'];

if (api.includes('api')) {
  await measure('tandem', 'dau', '/api/insights/trends', trends, (j) => j.results[0].data.join(' '));
  await measure('tandem', 'funnel', '/api/insights/funnel', funnel,
    (j) => j.results[0].steps.map((s) => s.count).join(' '));
  await measure('tandem', 'retention', '/api/insights/retention', retention,
    (j) => j.results.flatMap((c, i) => c.values.map((v, k) => `${i}:${k}:${v.count}`)).join(' '));
}

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

if (api.includes('sql')) {
  const rows = (j) => {
    if (j.truncated) throw new Error('SQL answer truncated');
    return j.rows;
  };
  await measure('duckdb-sql', 'dau', '/api/warehouse/sql', { query: sqlDau },
    (j) => rows(j).map((r) => r[1]).join(' '));
  await measure('duckdb-sql', 'funnel', '/api/warehouse/sql', { query: sqlFunnel },
    (j) => rows(j)[0].join(' '));
  await measure('duckdb-sql', 'retention', '/api/warehouse/sql', { query: sqlRetention },
    (j) => rows(j).map((r) => `${r[0]}:${r[1]}:${r[2]}`).join(' '));
}
