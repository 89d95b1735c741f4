// SQL models end to end (docs/models.md): validation at save time, write-audit-publish with
// every data test type, incremental builds against full rebuilds with late and
// duplicate-looking events, lineage and run order, and the user_stats example: Segment SDK
// events -> a model -> a synced collection that a signed-in user reads with the pocketbase SDK.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Analytics } from '@segment/analytics-node';
import { client, startWithSuperuserAndKey, expectStatus } from './lib/pb.mjs';
import { api, sql, waitLoaded, runModel, sendEvents } from './lib/models.mjs';

let srv, key, pb, token;

before(async () => {
  ({ srv, key, pb, token } = await startWithSuperuserAndKey());
});
after(async () => { await srv?.stop(); });

const A = () => ({ url: srv.url, token });

async function create(def) {
  const r = await api(A(), 'POST', '/api/models', def);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

test('bad models are refused at save time with 400 naming the problem', async () => {
  await create({ name: 'base_ev', sql: 'SELECT user_id, count(*) AS n FROM events GROUP BY 1' });
  await pb.collections.create({ name: 'narrow', type: 'base', fields: [{ name: 'user_id', type: 'text' }] });
  const cases = [
    [{ name: 'bad1', sql: 'SELEC 1' }, 'sql', /syntax error/],
    [{ name: 'bad2', sql: "INSERT INTO events (id) VALUES ('x')" }, 'sql', /SELECT/],
    [{ name: 'bad3', sql: 'SELECT * FROM nosuch' }, 'sql', /unknown table or model: nosuch/],
    [{ name: 'bad4', sql: "SELECT * FROM query('SELECT 1')" }, 'sql', /query\(\)/],
    [{ name: 'bad5', sql: 'SELECT 1 AS a; SELECT 2 AS b' }, 'sql', /one SELECT/],
    [{ name: 'bad6', sql: 'SELECT nosuchcol FROM events' }, 'sql', /does not bind/],
    [{ name: 'bad7', sql: 'SELECT 1 AS a', materialized: 'incremental' }, 'uniqueKey', /uniqueKey/],
    [{ name: 'bad8', sql: 'SELECT 1 AS a', materialized: 'incremental', uniqueKey: 'b' }, 'uniqueKey', /no column b/],
    [{ name: 'bad9', sql: 'SELECT 1 AS a', tests: [{ type: 'unique', column: 'zz' }] }, 'tests', /no column zz/],
    [{ name: 'bad10', sql: 'SELECT 1 AS a', tests: [{ type: 'relationships', column: 'a', to: 'nowhere' }] }, 'tests', /unknown table or model: nowhere/],
    [{ name: 'bad11', sql: 'SELECT 1 AS a', schedule: '61 * * * *' }, 'schedule', /cron/],
    [{ name: 'bad12', sql: 'SELECT user_id, 3 AS extra FROM events', sync: { collection: 'narrow', key: 'user_id' } }, 'sync', /no field for the column extra/],
    [{ name: 'bad13', sql: 'SELECT 1 AS user_id', sync: { collection: 'narrow', key: 'user_id' } }, 'sync', /INTEGER.*text field user_id/],
    [{ name: 'bad14', sql: 'SELECT 1 AS a', tests: [{ type: 'sql', sql: 'DELETE FROM events' }] }, 'tests', /SELECT/],
    [{ name: 'Bad-Name', sql: 'SELECT 1' }, 'name', /name must/],
    [{ name: 'app_users', sql: 'SELECT 1' }, 'name', /name must/],
    [{ name: 'events', sql: 'SELECT 1' }, 'name', /already exists/],
    [{ name: 'base_ev', sql: 'SELECT 1' }, 'name', /already exists/],
  ];
  for (const [def, field, re] of cases) {
    const r = await api(A(), 'POST', '/api/models', def);
    assert.equal(r.status, 400, `${def.name}: ${r.text}`);
    assert.match(r.json.message, re, `${def.name}: ${r.text}`);
    assert.ok(r.json.data[field], `${def.name}: error on ${field}: ${r.text}`);
  }
  // cycles: b reads a; a may not then read b
  await create({ name: 'cyc_a', sql: 'SELECT 1 AS x' });
  await create({ name: 'cyc_b', sql: 'SELECT x FROM cyc_a' });
  const r = await api(A(), 'PATCH', '/api/models/cyc_a', { sql: 'SELECT x FROM cyc_b' });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.message, /cyc_a -> cyc_b -> cyc_a|cyc_b -> cyc_a -> cyc_b/);
  const self = await api(A(), 'PATCH', '/api/models/cyc_a', { sql: 'SELECT 1 AS x FROM cyc_a' });
  assert.equal(self.status, 400);
  assert.match(self.json.message, /reads itself/);
  // nothing of the refused ones was stored
  const list = await api(A(), 'GET', '/api/models');
  assert.deepEqual(list.json.items.map((m) => m.name).sort(), ['base_ev', 'cyc_a', 'cyc_b']);
  // a model others read cannot be deleted; then the reader first, then it
  assert.equal((await api(A(), 'DELETE', '/api/models/cyc_a')).status, 400);
  assert.equal((await api(A(), 'DELETE', '/api/models/cyc_b')).status, 204);
  assert.equal((await api(A(), 'DELETE', '/api/models/cyc_a')).status, 204);
  assert.equal((await api(A(), 'GET', '/api/models/cyc_a')).status, 404);
  // superusers only
  assert.equal((await api({ url: srv.url }, 'GET', '/api/models')).status, 401);
  assert.equal((await api(A(), 'POST', '/api/models/nosuch/run', {})).status, 404);
});

test('every data test type catches its violation; a failing version is never published', async () => {
  await create({ name: 'parents', sql: 'SELECT * FROM (VALUES (1), (2)) t(id)' });
  const good = "SELECT * FROM (VALUES (1, 'a', 'x'), (2, 'b', 'y')) t(id, name, kind)";
  const bad = "SELECT * FROM (VALUES (1, 'a', 'x'), (1, NULL, 'z'), (3, 'c', 'y')) t(id, name, kind)";
  const tests = [
    { type: 'unique', column: 'id' },
    { type: 'not_null', column: 'name' },
    { type: 'accepted_values', column: 'kind', values: ['x', 'y'] },
    { type: 'relationships', column: 'id', to: 'parents', field: 'id' },
    { type: 'row_count', min: 1, max: 2 },
    { type: 'sql', name: 'no_c', sql: "SELECT * FROM checked WHERE name = 'c'" },
  ];
  await create({ name: 'checked', sql: good, tests });
  let run = await runModel(A(), 'parents');
  assert.equal(run.status, 'success', JSON.stringify(run));
  run = await runModel(A(), 'checked');
  assert.equal(run.status, 'success', JSON.stringify(run));
  assert.deepEqual(run.tests.map((t) => t.status), tests.map(() => 'pass'));
  assert.equal(run.rows, 2);

  // the bad version: every test fails, the run fails, the good version stays published
  assert.equal((await api(A(), 'PATCH', '/api/models/checked', { sql: bad })).status, 200);
  run = await runModel(A(), 'checked');
  assert.equal(run.status, 'failed', JSON.stringify(run));
  const byName = Object.fromEntries(run.tests.map((t) => [t.name, t]));
  assert.equal(byName.unique_id.status, 'fail');
  assert.equal(byName.unique_id.failures, 1);
  assert.equal(byName.not_null_name.failures, 1);
  assert.equal(byName.accepted_values_kind.failures, 1);
  assert.equal(byName.relationships_id.failures, 1); // 3 has no parent
  assert.equal(byName.row_count.status, 'fail');
  assert.equal(byName.no_c.failures, 1);
  const pub = await sql(A(), 'SELECT id, name, kind FROM checked ORDER BY id');
  assert.deepEqual(pub.rows, [[1, 'a', 'x'], [2, 'b', 'y']]);

  // severity warn: published, the failure recorded
  const warnTests = tests.map((t) => ({ ...t, severity: 'warn' }));
  assert.equal((await api(A(), 'PATCH', '/api/models/checked', { tests: warnTests })).status, 200);
  run = await runModel(A(), 'checked');
  assert.equal(run.status, 'warn', JSON.stringify(run));
  assert.equal((await sql(A(), 'SELECT count(*) FROM checked')).rows[0][0], 3);
  // results are queryable in SQL
  const recorded = await sql(A(), "SELECT count(*) FROM _model_tests WHERE model = 'checked' AND status = 'fail'");
  assert.equal(recorded.rows[0][0], 12);
  const runs = await api(A(), 'GET', '/api/models/checked/runs');
  assert.deepEqual(runs.json.items.slice(0, 3).map((r) => r.status), ['warn', 'failed', 'success']);
  // metrics
  const metrics = await (await fetch(`${srv.url}/metrics`)).text();
  assert.match(metrics, /tandem_model_runs_total\{model="checked",status="failed"\} 1/);
  assert.match(metrics, /tandem_model_test_failures_total\{model="checked",test="unique_id"\} 2/);
});

test('a model whose input changes shape is marked broken and keeps its published version', async () => {
  await create({ name: 'shape_src', sql: 'SELECT 1 AS a, 2 AS b', materialized: 'table' });
  assert.equal((await runModel(A(), 'shape_src')).status, 'success');
  await create({ name: 'shape_dst', sql: 'SELECT b FROM shape_src' });
  assert.equal((await runModel(A(), 'shape_dst')).status, 'success');
  // shape_src loses column b: its run succeeds, shape_dst (run after it) is broken
  assert.equal((await api(A(), 'PATCH', '/api/models/shape_src', { sql: 'SELECT 1 AS a' })).status, 200);
  const run = await runModel(A(), 'shape_src');
  assert.equal(run.status, 'success');
  const dst = await waitRun('shape_dst', (r) => r.trigger === 'upstream');
  assert.equal(dst.status, 'broken', JSON.stringify(dst));
  assert.match(dst.message, /b/);
  assert.deepEqual((await sql(A(), 'SELECT b FROM shape_dst')).rows, [[2]]);
});

async function waitRun(name, pred) {
  for (let i = 0; i < 600; i++) {
    const r = await api(A(), 'GET', `/api/models/${name}/runs`);
    const hit = r.json.items.find((x) => pred(x) && x.status !== 'queued' && x.status !== 'running');
    if (hit) return hit;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`no run of ${name}`);
}

test('lineage: a run builds downstream models in dependency order', async () => {
  await create({ name: 'lin_a', sql: 'SELECT 1 AS v' });
  // lin_c cannot be made before lin_b exists
  assert.equal((await api(A(), 'POST', '/api/models', { name: 'lin_c', sql: 'SELECT v + 1 AS v FROM lin_b' })).status, 400);
  await create({ name: 'lin_b', sql: 'SELECT v + 1 AS v FROM lin_a', materialized: 'view' });
  await create({ name: 'lin_c', sql: 'SELECT v + 1 AS v FROM lin_b' });
  const got = await api(A(), 'GET', '/api/models/lin_c');
  assert.deepEqual(got.json.dependsOn, ['lin_b']);
  const run = await runModel(A(), 'lin_a');
  assert.equal(run.status, 'success');
  const b = await waitRun('lin_b', (r) => r.trigger === 'upstream');
  const c = await waitRun('lin_c', (r) => r.trigger === 'upstream');
  assert.ok(new Date(run.finishedAt) <= new Date(b.startedAt));
  assert.ok(new Date(b.finishedAt) <= new Date(c.startedAt));
  assert.deepEqual((await sql(A(), 'SELECT v FROM lin_c')).rows, [[3]]);
  assert.equal(b.mode, 'view');
});

test('incremental builds equal full rebuilds with late and duplicate-looking events', async () => {
  const body = `SELECT user_id, count(*) AS n, count(DISTINCT event) AS kinds, min("timestamp") AS first_ts,
      max("timestamp") AS last_ts, sum(CAST(properties->>'amount' AS DOUBLE)) AS amount
    FROM events WHERE source = 'web' AND event LIKE 'inc %' GROUP BY user_id`;
  await create({ name: 'inc_m', sql: body, materialized: 'incremental', uniqueKey: 'user_id', tests: [{ type: 'unique', column: 'user_id' }] });
  await create({ name: 'full_m', sql: body, materialized: 'table' });
  // per user and day, keyed by a computed column: counts, a DECIMAL sum, min and max merge
  // into the published rows instead of re-aggregating (docs/models.md "Incremental semantics")
  const daily = `SELECT user_id || '/' || CAST(CAST("timestamp" AS DATE) AS VARCHAR) AS user_day, count(*) AS n,
      count(*) FILTER (WHERE event = 'inc 1') AS n1, sum(CAST(properties->>'amount' AS DECIMAL(10, 2))) AS amount,
      min("timestamp") AS first_ts, max("timestamp") AS last_ts
    FROM events WHERE source = 'web' AND event LIKE 'inc %' GROUP BY ALL`;
  await create({ name: 'inc_d', sql: daily, materialized: 'incremental', uniqueKey: 'user_day', tests: [{ type: 'unique', column: 'user_day' }] });
  await create({ name: 'full_d', sql: daily, materialized: 'table' });
  const analytics = new Analytics({ writeKey: key, host: srv.url, flushAt: 50, maxRetries: 3, flushInterval: 50 });
  let seq = 0;
  const base = Date.UTC(2026, 0, 10);
  const modes = [];
  for (let round = 0; round < 4; round++) {
    const evs = [];
    for (let i = 0; i < 60; i++) {
      const u = `iu${(i * 7 + round) % 13}`;
      // late events: timestamps before everything sent so far; duplicate-looking: the same
      // content sent again with a new messageId (a second, real event)
      const late = round > 0 && i % 5 === 0;
      const ts = new Date(base + (late ? -86400000 * (round + 1) : round * 3600000 + i * 1000));
      const ev = { userId: u, event: `inc ${i % 3}`, properties: { amount: (i % 4) + 0.5 }, timestamp: ts, messageId: `inc-${seq++}` };
      evs.push(ev);
      if (i % 9 === 0) evs.push({ ...ev, messageId: `inc-${seq++}` });
    }
    await sendEvents(analytics, evs);
    await waitLoaded(A(), "SELECT count(*) FROM events WHERE id LIKE 'inc-%'", seq);
    const ri = await runModel(A(), 'inc_m');
    const rf = await runModel(A(), 'full_m');
    assert.equal(ri.status, 'success', JSON.stringify(ri));
    assert.equal(rf.status, 'success', JSON.stringify(rf));
    modes.push(ri.mode);
    const diff = await sql(A(), 'SELECT count(*) FROM ((SELECT * FROM inc_m EXCEPT ALL SELECT * FROM full_m) UNION ALL (SELECT * FROM full_m EXCEPT ALL SELECT * FROM inc_m))');
    assert.equal(diff.rows[0][0], 0, `round ${round}: incremental differs from the full rebuild`);
    const total = await sql(A(), 'SELECT sum(n) FROM inc_m');
    assert.equal(Number(total.rows[0][0]), seq);
    const di = await runModel(A(), 'inc_d');
    const df = await runModel(A(), 'full_d');
    assert.equal(di.status, 'success', JSON.stringify(di));
    assert.equal(df.status, 'success', JSON.stringify(df));
    assert.equal(di.mode, round === 0 ? 'full' : 'incremental');
    const ddiff = await sql(A(), 'SELECT count(*) FROM ((SELECT * FROM inc_d EXCEPT ALL SELECT * FROM full_d) UNION ALL (SELECT * FROM full_d EXCEPT ALL SELECT * FROM inc_d))');
    assert.equal(ddiff.rows[0][0], 0, `round ${round}: the daily incremental model differs from its full rebuild`);
    const dtotal = await sql(A(), 'SELECT sum(n) FROM inc_d');
    assert.equal(Number(dtotal.rows[0][0]), seq);
  }
  await analytics.closeAndFlush({ timeout: 10000 });
  assert.deepEqual(modes, ['full', 'incremental', 'incremental', 'incremental']);
  // a run with no new event changes nothing and reads an empty range
  const again = await runModel(A(), 'inc_m');
  assert.equal(again.eventsFrom, again.eventsTo);
  // full refresh on request
  const full = await runModel(A(), 'inc_m', { fullRefresh: true });
  assert.equal(full.mode, 'full');
});

test('user_stats: Segment events -> model -> collection a signed-in user reads', async () => {
  await pb.collections.update('users', { fields: [...(await pb.collections.getOne('users')).fields, { name: 'plan', type: 'text' }] });
  const alice = await pb.collection('users').create({ email: 'alice@example.com', password: 'alice-pass-123', passwordConfirm: 'alice-pass-123', plan: 'pro' });
  const bob = await pb.collection('users').create({ email: 'bob@example.com', password: 'bob-pass-1234', passwordConfirm: 'bob-pass-1234', plan: 'free' });
  const carol = await pb.collection('users').create({ email: 'carol@example.com', password: 'carol-pass-12', passwordConfirm: 'carol-pass-12', plan: 'free' });
  await pb.collections.create({
    name: 'user_stats', type: 'base',
    fields: [{ name: 'user', type: 'text' }, { name: 'events', type: 'number' }, { name: 'last_seen', type: 'date' }, { name: 'plan', type: 'text' }],
    listRule: 'user = @request.auth.id', viewRule: 'user = @request.auth.id',
  });
  const analytics = new Analytics({ writeKey: key, host: srv.url, flushAt: 20, maxRetries: 3, flushInterval: 50 });
  const now = Date.now();
  const evs = [];
  for (let i = 0; i < 7; i++) evs.push({ userId: alice.id, event: 'Viewed', timestamp: new Date(now - i * 3600000), messageId: `us-a-${i}` });
  for (let i = 0; i < 3; i++) evs.push({ userId: bob.id, event: 'Viewed', timestamp: new Date(now - i * 60000), messageId: `us-b-${i}` });
  evs.push({ userId: bob.id, event: 'Viewed', timestamp: new Date(now - 40 * 86400000), messageId: 'us-b-old' });
  evs.push({ userId: carol.id, event: 'Viewed', timestamp: new Date(now - 5000), messageId: 'us-c-1' });
  await sendEvents(analytics, evs);
  await analytics.closeAndFlush({ timeout: 10000 });
  await waitLoaded(A(), "SELECT count(*) FROM events WHERE id LIKE 'us-%'", evs.length);
  await waitLoaded(A(), "SELECT count(*) FROM app_users WHERE plan IS NOT NULL", 3);
  await create({
    name: 'user_stats',
    sql: `SELECT e.user_id AS "user", count(*) AS events, max(e."timestamp") AS last_seen, any_value(u.plan) AS plan
          FROM events e LEFT JOIN app_users u ON u.id = e.user_id
          WHERE e."timestamp" > now() - INTERVAL 30 DAY AND e.user_id IN (SELECT id FROM app_users)
          GROUP BY e.user_id`,
    materialized: 'incremental', uniqueKey: 'user',
    tests: [{ type: 'unique', column: 'user' }, { type: 'not_null', column: 'user' }],
    sync: { collection: 'user_stats', key: 'user', delete: true, maxChangeShare: 0.5 },
  });
  const run = await runModel(A(), 'user_stats');
  assert.equal(run.status, 'success', JSON.stringify(run));
  assert.equal(run.sync.created, 3);

  const ua = client(srv.url);
  await ua.collection('users').authWithPassword('alice@example.com', 'alice-pass-123');
  const mine = await ua.collection('user_stats').getFullList();
  assert.equal(mine.length, 1);
  assert.equal(mine[0].user, alice.id);
  assert.equal(mine[0].events, 7);
  assert.equal(mine[0].plan, 'pro');
  const seen = await sql(A(), 'SELECT max("timestamp") FROM events WHERE user_id = $1', [alice.id]);
  assert.equal(new Date(mine[0].last_seen.replace(' ', 'T')).getTime(), new Date(seen.rows[0][0]).getTime());
  const ub = client(srv.url);
  await ub.collection('users').authWithPassword('bob@example.com', 'bob-pass-1234');
  const bobs = await ub.collection('user_stats').getFullList();
  assert.equal(bobs.length, 1);
  assert.equal(bobs[0].events, 3); // the 40-day-old event is outside the window
  await expectStatus(ub.collection('user_stats').getOne(mine[0].id), 404);
  assert.equal((await client(srv.url).collection('user_stats').getFullList()).length, 0);

  // the sync is a write like any other: it reached the changes topic and the mirror
  await waitLoaded(A(), "SELECT count(*) FROM app_user_stats", 3);
  // a second run without new events changes nothing
  const again = await runModel(A(), 'user_stats');
  assert.equal(again.sync.unchanged, 3);
  assert.equal(again.sync.created + again.sync.updated + again.sync.deleted, 0);

  // more events for alice: incremental build, one record updated
  const a2 = new Analytics({ writeKey: key, host: srv.url, flushAt: 20, maxRetries: 3, flushInterval: 50 });
  await sendEvents(a2, [{ userId: alice.id, event: 'Viewed', timestamp: new Date(), messageId: 'us-a-new' }]);
  await a2.closeAndFlush({ timeout: 10000 });
  await waitLoaded(A(), "SELECT count(*) FROM events WHERE id LIKE 'us-%'", evs.length + 1);
  const r3 = await runModel(A(), 'user_stats');
  assert.equal(r3.mode, 'incremental');
  assert.equal(r3.sync.updated, 1, JSON.stringify(r3));
  assert.equal((await ua.collection('user_stats').getFullList())[0].events, 8);

  // a change of more than maxChangeShare stops and asks for confirmation
  assert.equal((await api(A(), 'PATCH', '/api/models/user_stats', { sql: `SELECT e.user_id AS "user", count(*) AS events, max(e."timestamp") AS last_seen, any_value(u.plan) AS plan
          FROM events e LEFT JOIN app_users u ON u.id = e.user_id
          WHERE e.user_id = '${alice.id}' GROUP BY e.user_id` })).status, 200);
  const r4 = await runModel(A(), 'user_stats');
  assert.equal(r4.status, 'needs_confirmation', JSON.stringify(r4));
  assert.equal((await pb.collection('user_stats').getFullList()).length, 3);
  const r5 = await runModel(A(), 'user_stats', { confirm: true });
  assert.equal(r5.status, 'success', JSON.stringify(r5));
  assert.equal(r5.sync.deleted, 2);
  assert.equal((await pb.collection('user_stats').getFullList()).length, 1);

  // the collection loses a field the model fills: the sync refuses instead of dropping it
  const coll = await pb.collections.getOne('user_stats');
  await pb.collections.update('user_stats', { fields: coll.fields.filter((f) => f.name !== 'plan') });
  const r6 = await runModel(A(), 'user_stats', { fullRefresh: true });
  assert.equal(r6.status, 'sync_failed', JSON.stringify(r6));
  assert.match(r6.message, /no field for the column plan/);
});

test('tandem models export -> import round trip, and run from the command line', async () => {
  const { run, tempDir } = await import('./lib/server.mjs');
  const { readFileSync, readdirSync, writeFileSync, rmSync } = await import('node:fs');
  const env = { TANDEM_TOKEN: token };
  await create({
    name: 'cli_src', sql: 'SELECT 1 AS id, \'a\' AS v', materialized: 'table', description: 'from the CLI test',
    tests: [{ type: 'unique', column: 'id' }, { type: 'accepted_values', column: 'v', values: ['a'], severity: 'warn' }],
    schedule: '*/5 * * * *', afterRecords: 100,
  });
  await create({ name: 'cli_dep', sql: 'SELECT id FROM cli_src', materialized: 'view' });
  const dir = tempDir('tandem-models-');
  const ex = await run(['models', 'export', dir, '--url', srv.url], { env });
  assert.equal(ex.code, 0, ex.stderr);
  const files = readdirSync(dir).sort();
  assert.ok(files.includes('cli_src.sql') && files.includes('cli_dep.sql'), files.join());
  const text = readFileSync(`${dir}/cli_src.sql`, 'utf8');
  assert.match(text, /^-- tandem model\n-- \{.*"materialized":"table".*\}\nSELECT 1 AS id, 'a' AS v\n$/);
  // the other tests' models read tables the second server does not have
  for (const f of files) if (!f.startsWith('cli_')) rmSync(`${dir}/${f}`);

  // a second server imports the folder: the same definitions
  const { srv: srv2, token: token2 } = await startWithSuperuserAndKey();
  try {
    const im = await run(['models', 'import', dir, '--url', srv2.url], { env: { TANDEM_TOKEN: token2 } });
    assert.equal(im.code, 0, im.stderr);
    const strip = (m) => { const { lastRun, ...rest } = m; return rest; };
    for (const name of ['cli_src', 'cli_dep']) {
      const a = await api(A(), 'GET', `/api/models/${name}`);
      const b = await api({ url: srv2.url, token: token2 }, 'GET', `/api/models/${name}`);
      assert.deepEqual(strip(b.json), strip(a.json));
    }
    // import again over existing models: replaced, still equal; a bad file is reported
    writeFileSync(`${dir}/broken.sql`, 'SELECT 1\n');
    const im2 = await run(['models', 'import', dir, '--url', srv2.url], { env: { TANDEM_TOKEN: token2 } });
    assert.equal(im2.code, 1);
    assert.match(im2.stderr, /broken\.sql: not a tandem model file/);
    // run from the command line: waits and prints the run
    const r = await run(['models', 'run', 'cli_src', '--url', srv2.url], { env: { TANDEM_TOKEN: token2 } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).status, 'success');
    const list = await run(['models', 'list', '--url', srv2.url], { env: { TANDEM_TOKEN: token2 } });
    assert.match(list.stdout, /cli_dep\s+view\s+success\s+cli_src/);
  } finally {
    await srv2.stop();
  }
});

test('triggers: a cron schedule and N new log records start runs without a request', async () => {
  // "* * * * *" is due in the current minute: the runner's next tick starts it
  await create({ name: 'trig_cron', sql: 'SELECT 1 AS one', schedule: '* * * * *' });
  const c = await waitRun('trig_cron', (r) => r.trigger === 'schedule');
  assert.equal(c.status, 'success');
  // afterRecords: a model never built counts every record of what it reads, so it runs at
  // once; then again once 5 more are loaded
  const pre = new Analytics({ writeKey: key, host: srv.url, flushAt: 10, maxRetries: 3, flushInterval: 50 });
  await sendEvents(pre, Array.from({ length: 5 }, (_, i) => ({ userId: 't', event: 'pre', messageId: `trigpre-${i}` })));
  await pre.closeAndFlush({ timeout: 10000 });
  await waitLoaded(A(), "SELECT count(*) FROM events WHERE id LIKE 'trigpre-%'", 5);
  await create({ name: 'trig_rec', sql: "SELECT count(*) AS n FROM events WHERE event = 'trig'", afterRecords: 5 });
  const first = await waitRun('trig_rec', (x) => x.trigger === 'records');
  assert.equal(first.status, 'success');
  assert.equal((await sql(A(), 'SELECT n FROM trig_rec')).rows[0][0], 0);
  const analytics = new Analytics({ writeKey: key, host: srv.url, flushAt: 10, maxRetries: 3, flushInterval: 50 });
  await sendEvents(analytics, Array.from({ length: 6 }, (_, i) => ({ userId: 't', event: 'trig', messageId: `trig-${i}` })));
  await analytics.closeAndFlush({ timeout: 10000 });
  const r = await waitRun('trig_rec', (x) => x.trigger === 'records' && x.id !== first.id);
  assert.equal(r.status, 'success');
  const n = (await sql(A(), 'SELECT n FROM trig_rec')).rows[0][0];
  assert.ok(n >= 5 && n <= 6, `the triggered run saw ${n} of the events`);
  const none = await api(A(), 'GET', '/api/models/trig_rec/runs');
  assert.ok(none.json.items.every((x) => x.trigger === 'records'));
});
