// The churn example end to end (docs/ml.md "Scores in a collection"): events captured with
// the Segment SDK -> a features query over the warehouse -> a trained, evaluated model ->
// scores synced into a collection by the scoring job -> read with the pocketbase SDK.
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

const USERS = 400;
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
  for (let i = 0; i < 600; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const FEATURES = `SELECT user_id,
  count(*) FILTER (WHERE event = 'Session') AS sessions,
  count(*) FILTER (WHERE event = 'Ticket') AS tickets,
  max(properties->>'plan') AS plan`;

test('events -> features -> model -> scores in a collection the SDK reads', async () => {
  // users with few sessions and many support tickets cancel (a known signal, hidden seed)
  const rnd = prng(randomInt(1, 1_000_000)).next;
  const analytics = new Analytics({ writeKey: key, host: srv.url, flushAt: 200, maxRetries: 3 });
  let events = 0;
  const truth = new Map();
  for (let u = 0; u < USERS; u++) {
    const userId = `user${u}`;
    const sessions = 1 + Math.floor(rnd() * 8), tickets = Math.floor(rnd() * 4);
    const plan = rnd() < 0.5 ? 'free' : 'pro';
    const risk = 1 / (1 + Math.exp(-(1.5 * tickets - 0.8 * sessions + 1)));
    const churned = rnd() < risk;
    truth.set(userId, { sessions, tickets, churned });
    for (let i = 0; i < sessions; i++, events++) analytics.track({ userId, event: 'Session', properties: { plan } });
    for (let i = 0; i < tickets; i++, events++) analytics.track({ userId, event: 'Ticket', properties: { plan } });
    if (churned) { analytics.track({ userId, event: 'Cancelled', properties: { plan } }); events++; }
  }
  await analytics.closeAndFlush({ timeout: 60000 });
  const sql = async (query) => (await api('POST', '/api/warehouse/sql', { query })).body;
  await until('the events in the warehouse', async () => (await sql('SELECT count(*) FROM events')).rows?.[0][0] === events);

  // the app's collection for the scores, readable by anyone
  await pb.collections.create({ name: 'churn_scores', type: 'base', listRule: '', viewRule: '',
    fields: [{ name: 'user', type: 'text' }, { name: 'churn', type: 'number' }] });
  const spec = {
    name: 'churn', task: 'binary', key: 'user_id', label: 'churned', validFraction: 0.3, numRounds: 50,
    params: { max_depth: 3, eta: 0.2 },
    query: `${FEATURES}, max(CASE WHEN event = 'Cancelled' THEN 1 ELSE 0 END) AS churned FROM events GROUP BY user_id ORDER BY user_id`,
    score: { query: `${FEATURES} FROM events GROUP BY user_id`, key: 'user_id', collection: 'churn_scores', keyField: 'user', scoreField: 'churn' },
  };
  // the score target is checked when the spec is
  let r = await api('POST', '/api/ml/models', { ...spec, score: { ...spec.score, scoreField: 'user' } });
  assert.equal(r.status, 400);
  assert.ok(r.body.data['score.scoreField'], JSON.stringify(r.body));
  r = await api('POST', '/api/ml/models', spec);
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const model = await until('the trained model and its scoring run', async () => {
    const m = (await api('GET', '/api/ml/models/churn')).body;
    return m.versions[0].status !== 'queued' && m.versions[0].status !== 'training' && m.scoring ? m : null;
  });
  const v = model.versions[0];
  assert.equal(v.status, 'ready', v.error);
  assert.equal(v.rows.train + v.rows.valid, USERS);
  assert.ok(v.metrics.auc > 0.6, `AUC ${v.metrics.auc}`);
  assert.deepEqual(v.features.map((f) => f.name), ['sessions', 'tickets', 'plan']);
  assert.equal(model.scoring.status, 'ok', model.scoring.error);
  assert.equal(model.scoring.rows, USERS);

  // the app reads the scores through the records API, as a guest
  const guest = client(srv.url);
  const scores = await guest.collection('churn_scores').getFullList({ batch: 500 });
  assert.equal(scores.length, USERS);
  const byUser = new Map(scores.map((s) => [s.user, s.churn]));
  assert.equal(byUser.size, USERS);
  // they are the model's predictions for each user's features
  const one = scores[0];
  const t = truth.get(one.user);
  const p = await api('POST', '/api/ml/models/churn/predict', { rows: [{ sessions: t.sessions, tickets: t.tickets, plan: (await sql(`SELECT max(properties->>'plan') FROM events WHERE user_id = '${one.user}'`)).rows[0][0] }] });
  assert.ok(Math.abs(p.body.predictions[0].score - one.churn) < 1e-6);
  // and rank churners above the others on average
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const churners = [...truth].filter(([, x]) => x.churned).map(([u]) => byUser.get(u));
  const stayers = [...truth].filter(([, x]) => !x.churned).map(([u]) => byUser.get(u));
  assert.ok(mean(churners) > mean(stayers), `${mean(churners)} ${mean(stayers)}`);

  // scoring again updates the same records (upserts by a key-derived id)
  const before = model.scoring.started;
  assert.equal((await api('POST', '/api/ml/models/churn/score')).status, 202);
  await until('the second scoring run', async () => {
    const m = (await api('GET', '/api/ml/models/churn')).body;
    return m.scoring.started !== before && m.scoring.status ? m : null;
  });
  assert.equal((await guest.collection('churn_scores').getList(1, 1)).totalItems, USERS);
  // the scores reach the warehouse too, through the collection's mirror
  await until('the mirror', async () => (await sql('SELECT count(*) FROM app_churn_scores')).rows?.[0][0] === USERS);
});

test('the dashboard\'s ML page shows the model, its metrics, ROC and importance, and scores a row', async () => {
  const model = (await api('GET', '/api/ml/models/churn')).body;
  const v = model.versions[0];
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
    assert.match(versions, /1 \(active\)/);
    assert.match(versions, new RegExp(`AUC ${v.metrics.auc.toFixed(2).replace(/0$/, '').replace(/\.$/, '')}`));
    // the ROC curve and the importance bars hold the version's numbers
    const charts = await page.evaluate(() => ['ml-roc', 'ml-importance'].map((id) => {
      const c = window.Chart.getChart(document.querySelector(`[data-testid="${id}"]`));
      return { labels: c.data.labels, n: c.data.datasets[0].data.length };
    }));
    assert.equal(charts[0].n, v.metrics.roc.length);
    assert.deepEqual([...charts[1].labels].sort(), Object.keys(v.importance.gain).sort());
    assert.match(await text('ml-scoring'), new RegExp(`^ok: ${USERS} rows into churn_scores`));
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
