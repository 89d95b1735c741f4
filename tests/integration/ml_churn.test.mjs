// The churn example end to end (docs/ml.md "Training from a data model", "Scores in a
// collection"): events captured with the Segment SDK -> a features data model -> an ML model
// trained from that data model by name and evaluated -> a scores data model (tandem_predict)
// synced into a collection that a signed-in user reads with the pocketbase SDK; a new run of
// the features model retrains the ML model. Also the ML module's own scoring job.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Analytics } from '@segment/analytics-node';
import { chromium } from 'playwright-core';
import { client, startWithSuperuserAndKey, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';
import { prng } from './lib/insights_gen.mjs';
import { runModel } from './lib/models.mjs';

const USERS = 400;
const SIGNED_IN = 2; // users 0..1 are real accounts; their record id is their userId
let srv, pb, key, dir;

before(async () => {
  ({ srv, pb, key, dir } = await startWithSuperuserAndKey());
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function api(method, path, body) {
  const r = await fetch(`${srv.url}${path}`, {
    method, headers: { 'Content-Type': 'application/json', Authorization: pb.authStore.token },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}

async function until(what, fn) {
  for (let i = 0; i < 1200; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const finished = (v) => v && v.status !== 'queued' && v.status !== 'training';
const FEATURES_SQL = `SELECT user_id,
  count(*) FILTER (WHERE event = 'Session') AS sessions,
  count(*) FILTER (WHERE event = 'Ticket') AS tickets,
  max(properties->>'plan') AS plan,
  max(CASE WHEN event = 'Cancelled' THEN 1 ELSE 0 END) AS churned
  FROM events GROUP BY user_id`;

test('events -> features model -> ML model trained from it -> scores synced into a collection a signed-in user reads', async () => {
  const A = { url: srv.url, token: pb.authStore.token };
  const accounts = [];
  for (let i = 0; i < SIGNED_IN; i++) {
    const email = `u${i}@example.com`;
    const rec = await pb.collection('users').create({ email, password: 'churn-pass-123', passwordConfirm: 'churn-pass-123' });
    accounts.push({ id: rec.id, email });
  }
  // users with few sessions and many support tickets cancel (a known signal, hidden seed)
  const rnd = prng(randomInt(1, 1_000_000)).next;
  const analytics = new Analytics({ writeKey: key, host: srv.url, flushAt: 200, maxRetries: 3 });
  let events = 0;
  const truth = new Map();
  for (let u = 0; u < USERS; u++) {
    const userId = u < SIGNED_IN ? accounts[u].id : `user${u}`;
    const sessions = 1 + Math.floor(rnd() * 8), tickets = Math.floor(rnd() * 4);
    const plan = rnd() < 0.5 ? 'free' : 'pro';
    const risk = 1 / (1 + Math.exp(-(1.5 * tickets - 0.8 * sessions + 1)));
    const churned = rnd() < risk;
    truth.set(userId, { sessions, tickets, plan, churned });
    for (let i = 0; i < sessions; i++, events++) analytics.track({ userId, event: 'Session', properties: { plan } });
    for (let i = 0; i < tickets; i++, events++) analytics.track({ userId, event: 'Ticket', properties: { plan } });
    if (churned) { analytics.track({ userId, event: 'Cancelled', properties: { plan } }); events++; }
  }
  await analytics.closeAndFlush({ timeout: 60000 });
  const sql = async (query) => (await api('POST', '/api/warehouse/sql', { query })).body;
  await until('the events in the warehouse', async () => (await sql('SELECT count(*) FROM events')).rows?.[0][0] === events);

  // the features data model
  let r = await api('POST', '/api/models', { name: 'churn_features', sql: FEATURES_SQL, materialized: 'table',
    tests: [{ type: 'unique', column: 'user_id' }] });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const run1 = await runModel(A, 'churn_features');
  assert.equal(run1.status, 'success', JSON.stringify(run1));
  assert.equal(run1.rows, USERS);

  // bad requests name the field: an unknown data model, both a query and a model, a retrain
  // option without a data model
  const spec = {
    name: 'churn', task: 'binary', key: 'user_id', label: 'churned', validFraction: 0.3, numRounds: 50,
    params: { max_depth: 3, eta: 0.2 }, model: 'churn_features', retrainOnModelRun: true,
  };
  r = await api('POST', '/api/ml/models', { ...spec, model: 'no_such_model' });
  assert.equal(r.status, 400);
  assert.equal(r.body.data.model.code, 'validation_unknown_model', JSON.stringify(r.body));
  r = await api('POST', '/api/ml/models', { ...spec, query: 'SELECT 1' });
  assert.equal(r.status, 400);
  assert.ok(r.body.data.model, JSON.stringify(r.body));
  r = await api('POST', '/api/ml/models', { ...spec, model: undefined, query: 'SELECT * FROM churn_features' });
  assert.equal(r.status, 400);
  assert.ok(r.body.data.retrainOnModelRun, JSON.stringify(r.body));

  // the app's collection for the ML module's own scoring job, readable by anyone
  await pb.collections.create({ name: 'churn_job', type: 'base', listRule: '', viewRule: '',
    fields: [{ name: 'user', type: 'text' }, { name: 'churn', type: 'number' }] });
  spec.score = { query: 'SELECT user_id, sessions, tickets, plan FROM churn_features', key: 'user_id', collection: 'churn_job', keyField: 'user', scoreField: 'churn' };
  // the score target is checked when the spec is
  r = await api('POST', '/api/ml/models', { ...spec, score: { ...spec.score, scoreField: 'user' } });
  assert.equal(r.status, 400);
  assert.ok(r.body.data['score.scoreField'], JSON.stringify(r.body));
  r = await api('POST', '/api/ml/models', spec);
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const model = await until('the trained model and its scoring run', async () => {
    const m = (await api('GET', '/api/ml/models/churn')).body;
    return finished(m.versions[0]) && m.scoring ? m : null;
  });
  const v = model.versions[0];
  assert.equal(v.status, 'ready', v.error);
  assert.equal(v.rows.train + v.rows.valid, USERS);
  assert.ok(v.metrics.auc > 0.6, `AUC ${v.metrics.auc}`);
  assert.deepEqual(v.features.map((f) => f.name), ['sessions', 'tickets', 'plan']);
  // the version says which data model and which of its runs it was trained on
  assert.equal(v.spec.model, 'churn_features');
  assert.equal(v.source.model, 'churn_features');
  assert.equal(v.source.run.id, run1.id);
  assert.equal(model.scoring.status, 'ok', model.scoring.error);
  assert.equal(model.scoring.rows, USERS);

  // the scores data model, synced into a collection each user reads their own row of
  await pb.collections.create({ name: 'churn_scores', type: 'base',
    listRule: 'user = @request.auth.id', viewRule: 'user = @request.auth.id',
    fields: [{ name: 'user', type: 'text' }, { name: 'churn', type: 'number' }] });
  r = await api('POST', '/api/models', { name: 'churn_scores', materialized: 'table',
    sql: `SELECT user_id AS "user", tandem_predict('churn', sessions, tickets, plan) AS churn FROM churn_features`,
    sync: { collection: 'churn_scores', key: 'user' } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const srun = await runModel(A, 'churn_scores');
  assert.equal(srun.status, 'success', JSON.stringify(srun));
  assert.equal(srun.sync.created, USERS);

  for (const acc of accounts) {
    const u = client(srv.url);
    await u.collection('users').authWithPassword(acc.email, 'churn-pass-123');
    const mine = await u.collection('churn_scores').getFullList();
    assert.equal(mine.length, 1);
    assert.equal(mine[0].user, acc.id);
    // the model's prediction for this user's features
    const t = truth.get(acc.id);
    const p = await api('POST', '/api/ml/models/churn/predict', { rows: [{ sessions: t.sessions, tickets: t.tickets, plan: t.plan }] });
    assert.ok(Math.abs(p.body.predictions[0].score - mine[0].churn) < 1e-6, `${p.body.predictions[0].score} ${mine[0].churn}`);
  }
  // a guest reads none of them
  assert.equal((await client(srv.url).collection('churn_scores').getFullList()).length, 0);
  // the superuser sees every score; churners rank above the others on average
  const scores = await pb.collection('churn_scores').getFullList({ batch: 500 });
  assert.equal(scores.length, USERS);
  const byUser = new Map(scores.map((s) => [s.user, s.churn]));
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const churners = [...truth].filter(([, x]) => x.churned).map(([u]) => byUser.get(u));
  const stayers = [...truth].filter(([, x]) => !x.churned).map(([u]) => byUser.get(u));
  assert.ok(mean(churners) > mean(stayers), `${mean(churners)} ${mean(stayers)}`);
  // the ML module's scoring job wrote the same scores, read by a guest
  const job = await client(srv.url).collection('churn_job').getFullList({ batch: 500 });
  assert.equal(job.length, USERS);
  for (const s of job) assert.ok(Math.abs(s.churn - byUser.get(s.user)) < 1e-6, s.user);

  // a new run of the features model retrains the ML model on its new version
  const more = new Analytics({ writeKey: key, host: srv.url, flushAt: 200, maxRetries: 3 });
  for (let u = 0; u < 50; u++) { more.track({ userId: `new${u}`, event: 'Session', properties: { plan: 'free' } }); events++; }
  await more.closeAndFlush({ timeout: 60000 });
  await until('the new events in the warehouse', async () => (await sql('SELECT count(*) FROM events')).rows?.[0][0] === events);
  const run2 = await runModel(A, 'churn_features');
  assert.equal(run2.status, 'success', JSON.stringify(run2));
  const m2 = await until('the retraining after the model run', async () => {
    const m = (await api('GET', '/api/ml/models/churn')).body;
    return finished(m.versions[1]) ? m : null;
  });
  const v2 = m2.versions[1];
  assert.equal(v2.status, 'ready', v2.error);
  assert.equal(v2.trigger, 'modelRun');
  assert.equal(v2.triggerRun, run2.id);
  assert.equal(v2.source.run.id, run2.id);
  assert.equal(v2.rows.train + v2.rows.valid, USERS + 50);
  assert.equal(m2.versions.length, 2); // one retraining per run
  // the scoring job follows the active version; its scores reach the warehouse too, through the
  // collection's mirror
  const m3 = await until('the scoring run of the active version', async () => {
    const m = (await api('GET', '/api/ml/models/churn')).body;
    return m.scoring?.version === m.active && m.scoring.status && m.scoring.finished ? m : null;
  });
  await until('the mirror', async () => (await sql('SELECT count(*) FROM app_churn_job')).rows?.[0][0] === m3.scoring.rows);
  // scoring again updates the same records (upserts by a key-derived id)
  assert.equal((await api('POST', '/api/ml/models/churn/score')).status, 202);
  const m4 = await until('the next scoring run', async () => {
    const m = (await api('GET', '/api/ml/models/churn')).body;
    return m.scoring.started !== m3.scoring.started && m.scoring.status ? m : null;
  });
  assert.equal(m4.scoring.rows, USERS + 50); // every row of the features model's new version
  assert.equal((await client(srv.url).collection('churn_job').getList(1, 1)).totalItems, USERS + 50);
});

test('the dashboard\'s ML page shows the model, its metrics, ROC and importance, and scores a row', async () => {
  const model = (await api('GET', '/api/ml/models/churn')).body;
  const v = model.versions.find((x) => x.version === model.active);
  const profile = mkdtempSync(join(tmpdir(), 'tandem-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  const errors = [];
  try {
    const page = context.pages()[0] || await context.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    const text = async (id) => {
      const el = page.locator(`[data-testid="${id}"]`);
      await el.waitFor({ timeout: 15000 });
      return (await el.textContent()).trim();
    };
    await page.goto(`${srv.url}/_/#/ml`);
    await page.fill('[data-testid=signin-email]', SU_EMAIL);
    await page.fill('[data-testid=signin-password]', SU_PASSWORD);
    await page.click('[data-testid=signin-submit]');
    assert.equal(await text('ml-model-churn'), 'churn');
    await page.click('[data-testid=ml-model-churn]');
    const versions = await text('ml-versions');
    assert.match(versions, new RegExp(`${model.active} \\(active\\)`));
    // each version says which data model run it was trained on, and the retraining its trigger
    assert.ok(versions.includes(`model churn_features, run ${model.versions[0].source.run.id}`), versions);
    assert.ok(versions.includes(`model churn_features, run ${model.versions[1].source.run.id}`), versions);
    assert.match(versions, /after a model run/);
    assert.match(versions, new RegExp(`AUC ${v.metrics.auc.toFixed(2).replace(/0$/, '').replace(/\.$/, '')}`));
    // the ROC curve and the importance bars hold the version's numbers
    const charts = await page.evaluate(() => ['ml-roc', 'ml-importance'].map((id) => {
      const c = window.Chart.getChart(document.querySelector(`[data-testid="${id}"]`));
      return { labels: c.data.labels, n: c.data.datasets[0].data.length };
    }));
    assert.equal(charts[0].n, v.metrics.roc.length);
    assert.deepEqual([...charts[1].labels].sort(), Object.keys(v.importance.gain).sort());
    assert.match(await text('ml-scoring'), new RegExp(`^ok: ${model.scoring.rows} rows into churn_job`));
    // score one row through the form: the same score as the API
    await page.fill('[data-testid=ml-input-sessions]', '2');
    await page.fill('[data-testid=ml-input-tickets]', '3');
    await page.selectOption('[data-testid=ml-input-plan]', 'pro');
    await page.click('[data-testid=ml-score]');
    const shown = Number(await text('ml-score-value'));
    const p = await api('POST', '/api/ml/models/churn/predict', { rows: [{ sessions: 2, tickets: 3, plan: 'pro' }] });
    assert.ok(Math.abs(shown - p.body.predictions[0].score) < 0.006, `${shown} ${p.body.predictions[0].score}`);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
