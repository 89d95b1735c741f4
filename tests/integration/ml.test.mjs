// ML (docs/ml.md): training on warehouse data, versions, serving over HTTP and SQL, rules,
// crash safety; Python's xgboost 1.7.4 (Debian's python3-xgboost) is the reference.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, start, tempDir } from './lib/server.mjs';
import { client, createSuperuser, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';

const N = 20000;
const SEED = randomInt(1, 1_000_000); // hidden: a new data set every run
const FEATURES = ['x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'plan'];
const NUMERIC = ['x1', 'x2', 'x3', 'x4', 'x5', 'x6'];
const u = (k) => `((hash(i * 31 + ${k} + ${SEED}) % 1000003) / 1000003.0)`;
// a known signal: the label follows x1, x2 and x6 (10 % missing) through a logistic link;
// x3..x5 are noise
const DATA = `SELECT i AS id, ${u(1)} AS x1, ${u(2)} AS x2, ${u(3)} AS x3, ${u(4)} AS x4,
  ${u(5)} AS x5, CASE WHEN hash(i * 31 + 9 + ${SEED}) % 10 = 0 THEN NULL ELSE ${u(6)} END AS x6,
  CASE WHEN ${u(7)} < 1 / (1 + exp(-(5 * ${u(1)} - 4 * ${u(2)} + 3 * coalesce(${u(6)}, 0.5) - 2)))
  THEN 1 ELSE 0 END AS label FROM range(${N}) t(i)`;
const QUERY = `SELECT id, x1, x2, x3, x4, x5, x6, label FROM (${DATA}) ORDER BY id`;
const PARAMS = { max_depth: 4, eta: 0.1, seed: 0 };
const SPEC = { name: 'churn', query: QUERY, task: 'binary', label: 'label', key: 'id',
  validFraction: 0.25, numRounds: 200, earlyStoppingRounds: 10, params: PARAMS };

let dir, srv, pb, token;

async function api(method, path, body, tok = token) {
  const r = await fetch(`${srv.url}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', ...(tok ? { Authorization: tok } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function sql(query) {
  const r = await api('POST', '/api/warehouse/sql', { query });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.rows;
}

async function waitVersion(name, version, done = (v) => !['queued', 'training'].includes(v.status)) {
  for (let i = 0; i < 1200; i++) {
    const r = await api('GET', `/api/ml/models/${name}`);
    const v = r.status === 200 && r.body.versions.find((x) => x.version === version);
    if (v && done(v)) return { model: r.body, version: v };
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.fail(`version ${version} of ${name} never got there`);
}

async function boot() {
  srv = await start({ dir, keepDir: true, args: ['--sql-max-rows', '100000', '--ml-threads', '2'] });
  pb = client(srv.url);
  await pb.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  token = pb.authStore.token;
}

before(async () => {
  dir = tempDir();
  await createSuperuser(dir);
  await boot();
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

// Asynchronous, so the event loop keeps running while Python trains: a synchronous spawn
// blocked it past the server's idle timeout under load, and the next request then reused a
// keep-alive connection the server had closed ("fetch failed").
function python(input) {
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/python3', [new URL('./lib/ml_ref.py', import.meta.url).pathname]);
    let out = '', err = '';
    p.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
    p.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0) reject(new Error(`ml_ref.py exited ${code}: ${err}`));
      else resolve(JSON.parse(out));
    });
    p.stdin.end(JSON.stringify(input));
  });
}

const rowOf = (r) => Object.fromEntries(NUMERIC.map((f, j) => [f, r[j + 1]]));

test('bad training requests and hyperparameters are 400s naming the field', async () => {
  const cases = [
    [{ ...SPEC, params: { max_depth: 99 } }, 'params.max_depth'],
    [{ ...SPEC, params: { eta: 0 } }, 'params.eta'],
    [{ ...SPEC, params: { bogus: 1 } }, 'params.bogus'],
    [{ ...SPEC, params: { tree_method: 'gpu_hist' } }, 'params.tree_method'],
    [{ ...SPEC, params: { eval_metric: 'rmse' } }, 'params.eval_metric'],
    [{ ...SPEC, task: 'ranking' }, 'task'],
    [{ ...SPEC, label: undefined }, 'label'],
    [{ ...SPEC, key: 'label' }, 'key'],
    [{ ...SPEC, name: 'no spaces' }, 'name'],
    [{ ...SPEC, validFraction: 1.5 }, 'validFraction'],
    [{ ...SPEC, numRounds: 0 }, 'numRounds'],
    [{ ...SPEC, query: undefined }, 'query'],
    [{ ...SPEC, colour: 'red' }, 'colour'],
    [{ ...SPEC, rule: '@request.auth.id ~~ ' }, 'rule'],
  ];
  for (const [spec, field] of cases) {
    const r = await api('POST', '/api/ml/models', spec);
    assert.equal(r.status, 400, `${field}: ${JSON.stringify(r.body)}`);
    assert.ok(r.body.data[field], `${field} named in ${JSON.stringify(r.body.data)}`);
  }
  // only superusers train
  assert.equal((await api('POST', '/api/ml/models', SPEC, null)).status, 401);
  // a query the warehouse refuses fails the version, with the reason
  const w = await api('POST', '/api/ml/models', { ...SPEC, name: 'bad', query: 'SELECT 1 AS id, 2 AS label' });
  assert.equal(w.status, 202);
  const { version } = await waitVersion('bad', 1);
  assert.equal(version.status, 'failed');
  assert.match(version.error, /no feature column/);
});

let v1;
test('a binary model trains on the worker, with metrics matching Python xgboost 1.7.4', async () => {
  const r = await api('POST', '/api/ml/models', SPEC);
  assert.equal(r.status, 202, JSON.stringify(r.body));
  assert.deepEqual(r.body, { name: 'churn', version: 1, status: 'queued' });
  const { model, version } = await waitVersion('churn', 1);
  assert.equal(version.status, 'ready', version.error);
  v1 = version;
  assert.equal(model.active, 1);
  assert.equal(version.rows.train + version.rows.valid, N);
  const m = version.metrics;
  for (const k of ['auc', 'logloss', 'accuracy', 'precision', 'recall', 'f1']) assert.equal(typeof m[k], 'number', k);
  assert.ok(m.roc.length >= 2 && m.roc.length <= 202);
  assert.ok(m.auc > 0.7, `the signal is learnt: AUC ${m.auc}`);
  // the signal's features weigh more than the noise
  const g = version.importance.gain;
  assert.ok(g.x1 > g.x3 && g.x1 > g.x4 && g.x2 > g.x5, JSON.stringify(g));
  assert.equal(version.metric.name, 'logloss');
  assert.ok(version.bestIteration >= 0 && version.bestIteration < version.rounds);

  const rows = await sql(QUERY);
  const scored = await sql(`SELECT id, tandem_predict('churn', x1, x2, x3, x4, x5, x6) AS p FROM (${QUERY}) ORDER BY id`);
  const ref = await python({
    rows, params: { ...PARAMS, objective: 'binary:logistic', eval_metric: 'logloss', tree_method: 'hist' },
    numRounds: SPEC.numRounds, earlyStoppingRounds: SPEC.earlyStoppingRounds, validFraction: SPEC.validFraction,
    modelFile: join(dir, 'ml', 'churn', 'v1.ubj'), predictRows: rows.map((r) => r.slice(1, -1)),
    tandemPreds: scored.map((r) => r[1]),
  });
  // the same split (FNV-1a of the key) gives the same row counts
  assert.equal(ref.nValid, version.rows.valid);
  assert.equal(ref.nTrain, version.rows.train);
  // validation AUC within 0.005 of Python's with the same parameters and split
  assert.ok(Math.abs(ref.auc - m.auc) <= 0.005, `tandem ${m.auc} python ${ref.auc}`);
  // tandem's AUC code agrees with sklearn's on tandem's own predictions
  assert.ok(Math.abs(ref.sklearnAuc - m.auc) < 1e-9, `tandem ${m.auc} sklearn ${ref.sklearnAuc}`);
  // tandem_predict over the whole table equals Python's predictions from the same file
  assert.equal(scored.length, N);
  for (let i = 0; i < N; i++) assert.ok(Math.abs(scored[i][1] - ref.filePreds[i]) <= 1e-6, `row ${i}`);
  // and so does the HTTP API, for a batch
  const batch = rows.slice(0, 500);
  const p = await api('POST', '/api/ml/models/churn/predict', { rows: batch.map(rowOf) });
  assert.equal(p.status, 200, JSON.stringify(p.body));
  assert.equal(p.body.version, 1);
  p.body.predictions.forEach((x, i) => {
    assert.ok(Math.abs(x.score - ref.filePreds[i]) <= 1e-6, `row ${i}`);
    assert.equal(x.label, x.score >= 0.5 ? 1 : 0);
  });
});

test('the split is deterministic: retraining gives the same rows and metrics', async () => {
  const r = await api('POST', '/api/ml/models', { name: 'churn' , query: QUERY, task: 'binary', label: 'label', key: 'id',
    validFraction: 0.25, numRounds: 200, earlyStoppingRounds: 10, params: PARAMS });
  assert.equal(r.status, 202);
  const { model, version } = await waitVersion('churn', 2);
  assert.equal(version.status, 'ready', version.error);
  assert.deepEqual(version.rows, v1.rows);
  assert.equal(version.metrics.auc, v1.metrics.auc);
  assert.equal(version.metric.value, v1.metric.value);
  // not better on the validation metric: not promoted automatically
  assert.equal(version.autoPromoted, false);
  assert.equal(model.active, 1);
});

test('promote, rollback; contributions; prediction input errors are 400s naming the field', async () => {
  let r = await api('POST', '/api/ml/models/churn/promote', { version: 2 });
  assert.equal(r.status, 200);
  assert.equal(r.body.active, 2);
  r = await api('POST', '/api/ml/models/churn/rollback');
  assert.equal(r.status, 200);
  assert.equal(r.body.active, 1);
  assert.equal((await api('POST', '/api/ml/models/churn/promote', { version: 99 })).status, 404);
  assert.equal((await api('POST', '/api/ml/models/churn/promote', {})).status, 400);
  assert.equal((await api('POST', '/api/ml/models/nope/predict', { rows: [{}] })).status, 404);

  const row = { x1: 0.9, x2: 0.1, x3: 0.5, x4: 0.5, x5: 0.5, x6: null };
  r = await api('POST', '/api/ml/models/churn/predict', { rows: [row], contributions: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const { score, contributions } = r.body.predictions[0];
  const margin = Object.values(contributions).reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(1 / (1 + Math.exp(-margin)) - score) < 1e-5, `${margin} ${score}`);
  assert.deepEqual(Object.keys(contributions).sort(), [...NUMERIC, 'bias'].sort());

  const bad = [
    [{ rows: [{ ...row, x7: 1 }] }, 'rows.0.x7'],
    [{ rows: [row, { ...row, x1: undefined }] }, 'rows.1.x1'],
    [{ rows: [{ ...row, x2: 'high' }] }, 'rows.0.x2'],
    [{ rows: [row, 5] }, 'rows.1'],
    [{ rows: [] }, 'rows'],
    [{ rows: Array(10001).fill(row) }, 'rows'],
    [{ rows: [row], contributions: 'yes' }, 'contributions'],
  ];
  for (const [body, field] of bad) {
    const b = await api('POST', '/api/ml/models/churn/predict', body);
    assert.equal(b.status, 400, field);
    assert.ok(b.body.data[field], `${field} in ${JSON.stringify(b.body.data)}`);
  }
});

test('the text path and the JSON path of predict answer the same', async () => {
  // docs/ml.md "Serving": a plain body is read in place; one with contributions, an escaped
  // key or a repeated key goes through jansson; the scores are the same floats
  const raw = async (text) => {
    const r = await fetch(`${srv.url}/api/ml/models/churn/predict`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: token }, body: text,
    });
    const body = await r.json();
    assert.equal(r.status, 200, JSON.stringify(body));
    return body.predictions.map((p) => p.score);
  };
  const plain = await raw(' { "rows" : [ {"x1": 0.25,"x2":0.75,"x3":1,"x4":0,"x5":true,"x6":null},\n'
    + '{"x6":0.5,"x5":0.5,"x4":0.5,"x3":0.5,"x2":0.5,"x1":0.5} ], "extra": {"a":[1,2]}, "contributions": false } ');
  const viaJson = await raw('{"rows":[{"x1":0.25,"x2":0.75,"x3":1,"x4":0,"x5":true,"x6":null},'
    + '{"x6":0.5,"x5":0.5,"x4":0.5,"x3":0.5,"x2":0.5,"x1":0.5}],"contributions":true}');
  const escaped = await raw('{"rows":[{"x\\u0031":0.25,"x2":0.75,"x3":1,"x4":0,"x5":true,"x6":null},'
    + '{"x6":0.5,"x5":0.5,"x4":0.5,"x3":0.5,"x2":0.5,"x1":0.9,"x1":0.5}]}');
  assert.equal(plain.length, 2);
  assert.deepEqual(viaJson.map(Math.fround), plain.map(Math.fround));
  assert.deepEqual(escaped.map(Math.fround), plain.map(Math.fround));
  // the features land in the warehouse as the client wrote them
  for (let i = 0; ; i++) {
    const rows = await sql("SELECT features::VARCHAR FROM predictions WHERE model = 'churn' AND features::VARCHAR LIKE '%\"x1\": 0.25%' ORDER BY log_offset");
    if (rows.length >= 1) {
      assert.equal(rows[0][0], '{"x1": 0.25,"x2":0.75,"x3":1,"x4":0,"x5":true,"x6":null}');
      break;
    }
    assert.ok(i < 200);
    await new Promise((res) => setTimeout(res, 50));
  }
});

test('the model rule decides who may score', async () => {
  await pb.collection('users').create({ email: 'ann@example.com', password: 'password123', passwordConfirm: 'password123' });
  const user = client(srv.url);
  await user.collection('users').authWithPassword('ann@example.com', 'password123');
  const row = { x1: 0.5, x2: 0.5, x3: 0.5, x4: 0.5, x5: 0.5, x6: 0.5 };
  const ask = (tok) => api('POST', '/api/ml/models/churn/predict', { rows: [row] }, tok);
  // no rule (null): superusers only
  assert.equal((await ask(null)).status, 403);
  assert.equal((await ask(user.authStore.token)).status, 403);
  assert.equal((await ask(token)).status, 200);
  // signed-in users
  let r = await api('PATCH', '/api/ml/models/churn', { rule: '@request.auth.id != ""' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal((await ask(null)).status, 403);
  assert.equal((await ask(user.authStore.token)).status, 200);
  // a rule on the requester's record
  r = await api('PATCH', '/api/ml/models/churn', { rule: '@request.auth.email = "bob@example.com"' });
  assert.equal(r.status, 200);
  assert.equal((await ask(user.authStore.token)).status, 403);
  // anyone
  r = await api('PATCH', '/api/ml/models/churn', { rule: '' });
  assert.equal((await ask(null)).status, 200);
  assert.equal((await api('PATCH', '/api/ml/models/churn', { rule: 'id ~~~' })).status, 400);
  // the rule never opens the management routes
  assert.equal((await api('GET', '/api/ml/models/churn', undefined, user.authStore.token)).status, 403);
});

test('categorical text features, multiclass and regression tasks', async () => {
  const q = `SELECT i AS id, ${u(1)} AS x1, CASE i % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'pro' ELSE NULL END AS plan,
    (i % 3) AS cls, 3 * ${u(1)} + (i % 3) AS y FROM range(3000) t(i) ORDER BY id`;
  let r = await api('POST', '/api/ml/models', { name: 'plans', query: `SELECT id, x1, plan, cls FROM (${q})`, task: 'multiclass',
    label: 'cls', key: 'id', numRounds: 20 });
  assert.equal(r.status, 202);
  let { version } = await waitVersion('plans', 1);
  assert.equal(version.status, 'ready', version.error);
  assert.deepEqual(version.features.find((f) => f.name === 'plan'), { name: 'plan', type: 'categorical', categories: ['free', 'pro'] });
  assert.equal(version.numClass, 3);
  assert.equal(version.metrics.confusion.length, 3);
  assert.ok(version.metrics.accuracy > 0.95, JSON.stringify(version.metrics));
  const p = await api('POST', '/api/ml/models/plans/predict', { rows: [{ x1: 0.2, plan: 'pro' }, { x1: 0.2, plan: null }, { x1: 0.2, plan: 'unseen' }] }, token);
  assert.equal(p.status, 200, JSON.stringify(p.body));
  assert.equal(p.body.predictions[0].label, 1);
  assert.equal(p.body.predictions[1].label, 2);
  assert.equal(p.body.predictions[0].probabilities.length, 3);
  // a category never seen in training is a missing value
  assert.deepEqual(p.body.predictions[2], p.body.predictions[1]);
  assert.equal((await api('POST', '/api/ml/models/plans/predict', { rows: [{ x1: 0.2, plan: 3 }] })).status, 400);
  // in SQL a categorical feature is given as its text (or its code); NULL and unseen are missing
  const cls = await sql("SELECT tandem_predict('plans', 0.2, 'pro'), tandem_predict('plans', 0.2, NULL), tandem_predict('plans', 0.2, 'unseen'), tandem_predict('plans', 0.2, 1)");
  assert.deepEqual(cls, [[1, 2, 2, 1]]);
  for (const bad of ["SELECT tandem_predict('plans', 0.2)", "SELECT tandem_predict('plans', 'x', 'pro')", "SELECT tandem_predict('nope', 1, 'pro')", "SELECT tandem_predict('plans', DATE '2024-01-01', 'pro')"]) {
    const b = await api('POST', '/api/warehouse/sql', { query: bad });
    assert.equal(b.status, 400, bad);
    assert.match(b.body.data.detail, /tandem_predict/, bad);
  }

  r = await api('POST', '/api/ml/models', { name: 'reg', query: `SELECT id, x1, cls, y FROM (${q})`, task: 'regression',
    label: 'y', key: 'id', numRounds: 100, params: { eval_metric: 'mae' } });
  assert.equal(r.status, 202);
  ({ version } = await waitVersion('reg', 1));
  assert.equal(version.status, 'ready', version.error);
  assert.equal(version.metric.name, 'mae');
  assert.ok(version.metrics.r2 > 0.9 && version.metrics.rmse > 0 && version.metrics.mae > 0, JSON.stringify(version.metrics));
});

test('served predictions are logged to the "predictions" topic and land in the warehouse', async () => {
  // the categorical model served 3 rows over HTTP (the 400 was not served)
  for (let i = 0; ; i++) {
    const rows = await sql("SELECT version, features->>'plan' AS plan, prediction->>'label' AS label, score FROM predictions WHERE model = 'plans' ORDER BY log_offset");
    if (rows.length === 3) {
      assert.deepEqual(rows.map((r) => r.slice(0, 3)), [[1, 'pro', '1'], [1, null, '2'], [1, 'unseen', '2']]);
      assert.deepEqual(rows.map((r) => r[3]), [1, 2, 2]);
      break;
    }
    assert.ok(rows.length < 3 && i < 200, JSON.stringify(rows));
    await new Promise((res) => setTimeout(res, 50));
  }
  const n = await sql("SELECT count(*) FROM predictions WHERE model = 'churn' AND score BETWEEN 0 AND 1");
  assert.ok(n[0][0] >= 500);
});

test('cancel; kill -9 during training leaves the active version serving', async () => {
  const long = { ...SPEC, query: QUERY.replace(`range(${N})`, 'range(200000)'), numRounds: 10000, earlyStoppingRounds: 0,
    params: { max_depth: 10, eta: 0.01 } };
  let r = await api('POST', '/api/ml/models', long);
  assert.equal(r.status, 202);
  const v = r.body.version;
  await waitVersion('churn', v, (x) => x.status === 'training' && x.round >= 1);
  assert.equal((await api('POST', '/api/ml/models', long)).status, 409);
  assert.equal((await api('POST', '/api/ml/models/churn/cancel')).status, 204);
  const { version } = await waitVersion('churn', v);
  assert.equal(version.status, 'cancelled');

  const row = { x1: 0.7, x2: 0.2, x3: 0.5, x4: 0.5, x5: 0.5, x6: 0.3 };
  const before = (await api('POST', '/api/ml/models/churn/predict', { rows: [row] })).body;
  r = await api('POST', '/api/ml/models', long);
  const w = r.body.version;
  await waitVersion('churn', w, (x) => x.status === 'training' && x.round >= 1);
  srv.proc.kill('SIGKILL');
  await srv.exited;
  await boot();
  const m = await api('GET', '/api/ml/models/churn');
  const killed = m.body.versions.find((x) => x.version === w);
  assert.equal(killed.status, 'failed');
  assert.match(killed.error, /interrupted/);
  assert.equal(m.body.active, before.version);
  assert.equal(existsSync(join(dir, 'ml', 'churn', `v${w}.ubj`)), false);
  const after = (await api('POST', '/api/ml/models/churn/predict', { rows: [row] })).body;
  assert.deepEqual(after, before);
});

test('tandem ml train --wait trains from a spec file on the running server', async () => {
  const file = join(dir, 'spec.json');
  writeFileSync(file, JSON.stringify({ ...SPEC, name: 'cli', numRounds: 20 }));
  const r = await run(['ml', 'train', file, '--wait', '300', '--url', srv.url, '--email', SU_EMAIL, '--password', SU_PASSWORD]);
  assert.equal(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assert.equal(v.status, 'ready');
  assert.equal(v.version, 1);
  const bad = await run(['ml', 'train', file, '--url', srv.url]);
  assert.equal(bad.code, 2);
  writeFileSync(file, JSON.stringify({ ...SPEC, name: 'cli', task: 'nope' }));
  const inv = await run(['ml', 'train', file, '--url', srv.url, '--email', SU_EMAIL, '--password', SU_PASSWORD]);
  assert.equal(inv.code, 1);
  assert.match(inv.stderr, /400.*task/);
  const list = await api('GET', '/api/ml/models');
  assert.deepEqual(list.body.items.map((m) => m.name).sort(), ['bad', 'churn', 'cli', 'plans', 'reg']);
  assert.equal((await api('DELETE', '/api/ml/models/cli')).status, 204);
  assert.equal(existsSync(join(dir, 'ml', 'cli', 'v1.ubj')), false);
  assert.equal((await api('GET', '/api/ml/models/cli')).status, 404);
});
