// The dashboard at /_/ in a real browser: Debian's chromium, headless, driven by playwright-core.
// A server gets a generated set of events (signup → activate → purchase over several days, plus
// pageviews) and a few collections with records; the test signs in through the UI, opens every
// page, checks the numbers it renders against the API's answers and against what was generated,
// checks that each chart really drew, and saves a PNG of every page under build/screenshots/.
// The HTTP side of /_/ (types, ETag/304, CSP, 404, HEAD) and the build's embed tool are checked
// without the browser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';
import { BIN, run } from './lib/server.mjs';
import { startWithSuperuserAndKey, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const HOUR = 3600e3;
const DAY = 24 * HOUR;

let srv, dir, key, pb, token, context, page, profile, shots;
const browserErrors = [];
const gen = { events: [], users: [] };

// ---- generated data ----

function generate(now) {
  const today0 = Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), new Date(now).getUTCDate());
  const ev = (userId, event, t, properties = {}) => gen.events.push({
    type: 'track', userId, event, properties, timestamp: new Date(t).toISOString(), messageId: `gen-${gen.events.length}`,
  });
  for (let i = 0; i < 40; i++) {
    const u = { id: `u${String(i).padStart(2, '0')}`, daysAgo: 2 + (i % 6), plan: i % 5 === 0 ? 'team' : i % 2 ? 'pro' : 'free' };
    u.t0 = today0 - u.daysAgo * DAY + (1 + ((i * 7) % 20)) * HOUR + i * 1000;
    u.activated = i % 4 !== 3;
    u.purchased = u.activated && i % 3 !== 2;
    ev(u.id, 'signup', u.t0, { plan: u.plan });
    if (u.activated) ev(u.id, 'activate', u.t0 + 2 * HOUR);
    if (u.purchased) ev(u.id, 'purchase', u.t0 + 26 * HOUR, { amount: 5 + i });
    u.twice = u.purchased && i % 5 === 1 && u.daysAgo >= 4; // a second purchase, two days after the first
    if (u.twice) ev(u.id, 'purchase', u.t0 + 3 * DAY, { amount: 1 });
    gen.users.push(u);
  }
  for (let k = 0; k < 25; k++) ev(`u${String(k % 40).padStart(2, '0')}`, 'pageview', now - (k % 10) * DAY - (k + 1) * 60e3, { path: `/p/${k % 4}` });
  gen.today0 = today0;
}

const count = (pred) => gen.users.filter(pred).length;
const num = (s) => Number(String(s).replace(/,/g, ''));

// ---- helpers ----

async function api(method, path, body) {
  const headers = { Authorization: token };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(srv.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  assert.equal(res.status, 200, `${method} ${path}: ${text.slice(0, 500)}`);
  return JSON.parse(text);
}
const sql = (query, params = []) => api('POST', '/api/warehouse/sql', { query, params });

async function testid(id) {
  const el = page.locator(`[data-testid="${id}"]`);
  await el.waitFor({ timeout: 15000 });
  return (await el.textContent()).trim();
}

async function shot(name) {
  await page.waitForTimeout(150); // one frame for the last chart update
  const path = join(shots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot: ${path}`);
}

// Non-background pixels in a canvas, and what Chart.js holds for it.
async function chartState(id) {
  return page.evaluate((tid) => {
    const canvas = document.querySelector(`[data-testid="${tid}"]`);
    const ctx = canvas.getContext('2d');
    const img = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    const colours = new Set();
    for (let i = 0; i < img.length; i += 4) {
      if (img[i + 3] === 0) continue;
      painted++;
      colours.add(`${img[i] >> 4},${img[i + 1] >> 4},${img[i + 2] >> 4}`);
    }
    const c = window.Chart.getChart(canvas);
    return {
      painted, colours: colours.size, width: canvas.width, height: canvas.height,
      type: c?.config.type, labels: c?.data.labels, datasets: c?.data.datasets.map((d) => ({ label: d.label, data: d.data })),
    };
  }, id);
}

function assertDrawn(st, what) {
  assert.ok(st.width > 100 && st.height > 100, `${what}: canvas ${st.width}x${st.height}`);
  // axes, grid, labels and the data marks: far more than a blank or axes-only canvas
  assert.ok(st.painted > 2000, `${what}: only ${st.painted} painted pixels`);
  assert.ok(st.colours >= 3, `${what}: ${st.colours} colours`);
}

// A failed request the test caused on purpose: it happened once, and is no browser error.
function expectedFailure(entry) {
  const i = browserErrors.indexOf(entry);
  assert.ok(i >= 0, `expected ${entry} among ${JSON.stringify(browserErrors)}`);
  browserErrors.splice(i, 1);
  assert.ok(!browserErrors.includes(entry), `${entry} more than once`);
}

// Runs fn (which makes the page send a request to path) and returns the JSON body sent.
async function requestBody(path, fn) {
  const [req] = await Promise.all([page.waitForRequest((r) => r.url().endsWith(path) && r.method() === 'POST', { timeout: 15000 }), fn()]);
  return JSON.parse(req.postData());
}

// ---- setup ----

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/setup-deps.sh (it installs Debian's chromium)`);
  ({ srv, dir, key, pb, token } = await startWithSuperuserAndKey());

  await pb.collections.create({ name: 'posts', fields: [{ name: 'title', type: 'text' }, { name: 'views', type: 'number' }] });
  await pb.collections.create({ name: 'tags', fields: [{ name: 'label', type: 'text' }] });
  for (let i = 0; i < 45; i++) await pb.collection('posts').create({ title: `Post ${i}`, views: i * 3 });
  for (const label of ['c', 'db', 'web']) await pb.collection('tags').create({ label });

  // the expected cohorts and buckets are days counted from today (UTC): keep the whole run
  // on one day rather than straddle midnight
  const toMidnight = DAY - (Date.now() % DAY);
  if (toMidnight < 120e3) await new Promise((r) => setTimeout(r, toMidnight + 1000));
  generate(Date.now());
  const res = await fetch(`${srv.url}/v1/batch`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ writeKey: key, batch: gen.events }),
  });
  assert.equal(res.status, 200, await res.text());
  // the warehouse has them all (the loader runs within a second or two)
  const deadline = Date.now() + 15000;
  for (;;) {
    const c = await sql("SELECT count(*) FROM events WHERE id LIKE 'gen-%'");
    if (c.rows[0][0] === gen.events.length) break;
    assert.ok(Date.now() < deadline, `warehouse has ${c.rows[0][0]} of ${gen.events.length} events`);
    await new Promise((r) => setTimeout(r, 100));
  }

  shots = join(dirname(BIN), 'screenshots');
  if (!existsSync(dirname(BIN))) shots = join(tmpdir(), 'tandem-screenshots');
  mkdirSync(shots, { recursive: true });
  console.log(`screenshots go to ${shots}`);

  profile = mkdtempSync(join(tmpdir(), 'tandem-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: { width: 1360, height: 900 },
    acceptDownloads: true,
  });
  page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => browserErrors.push(`pageerror: ${e.message}`));
  // failed responses are listed by the response handler, with their address
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) browserErrors.push(`console: ${m.text()}`); });
  page.on('response', (res) => { if (res.status() >= 400) browserErrors.push(`${res.status()} ${new URL(res.url()).pathname}`); });
  // nothing leaves the machine: every request the page makes goes to the server under test
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (!['blob:', 'data:'].includes(u.protocol) && u.origin !== srv.url) browserErrors.push(`request elsewhere: ${req.url()}`);
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await srv?.stop();
});

// ---- HTTP ----

test('/_/ serves the embedded files with types, ETag/304, a self-only CSP and 404s', async () => {
  const index = await fetch(`${srv.url}/_/`);
  assert.equal(index.status, 200);
  assert.equal(index.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal(index.headers.get('cache-control'), 'no-cache');
  const csp = index.headers.get('content-security-policy');
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
  assert.equal(index.headers.get('x-content-type-options'), 'nosniff');
  const html = await index.text();
  assert.equal(html, readFileSync(new URL('../../web/index.html', import.meta.url), 'utf8'));
  const same = await fetch(`${srv.url}/_/index.html`);
  assert.equal(same.headers.get('etag'), index.headers.get('etag'));
  assert.equal(await same.text(), html);

  const js = await fetch(`${srv.url}/_/js/app.js`);
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.equal(await js.text(), readFileSync(new URL('../../web/js/app.js', import.meta.url), 'utf8'));
  const css = await fetch(`${srv.url}/_/style.css`);
  assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');
  const lib = await fetch(`${srv.url}/_/vendor/chart.umd.min.js`);
  assert.equal(lib.status, 200);
  const libBytes = Buffer.from(await lib.arrayBuffer());
  assert.ok(libBytes.equals(readFileSync(new URL('../../web/node_modules/chart.js/dist/chart.umd.min.js', import.meta.url))));

  const etag = css.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]{16}-[0-9a-f]+"$/);
  const c304 = await fetch(`${srv.url}/_/style.css`, { headers: { 'If-None-Match': etag } });
  assert.equal(c304.status, 304);
  assert.equal(c304.headers.get('etag'), etag);
  assert.equal(await c304.text(), '');
  // a Content-Length on a 304 must be the 200's (RFC 9110 8.6), never 0
  assert.equal(c304.headers.get('content-length') ?? css.headers.get('content-length'), css.headers.get('content-length'));
  assert.equal((await fetch(`${srv.url}/_/style.css`, { headers: { 'If-None-Match': `"other", W/${etag}` } })).status, 304);
  assert.equal((await fetch(`${srv.url}/_/style.css`, { headers: { 'If-None-Match': '"other"' } })).status, 200);
  assert.equal((await fetch(`${srv.url}/_/js/app.js`, { headers: { 'If-None-Match': etag } })).status, 200);

  const head = await fetch(`${srv.url}/_/style.css`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('etag'), etag);

  for (const p of ['/_/nope.js', '/_/js', '/_/index.html/', '/_/INDEX.HTML', '/_/node_modules/chart.js/package.json']) {
    const r = await fetch(`${srv.url}${p}`);
    assert.equal(r.status, 404, p);
    assert.deepEqual(await r.json(), { data: {}, message: "The requested resource wasn't found.", status: 404 }, p);
  }
  const post = await fetch(`${srv.url}/_/`, { method: 'POST' });
  assert.equal(post.status, 405);
  const bare = await fetch(`${srv.url}/_`, { redirect: 'manual' });
  assert.equal(bare.status, 301);
  assert.equal(bare.headers.get('location'), '/_/');
});

test('the build tool embeds files and refuses unknown types and missing files', () => {
  const tool = join(dirname(BIN), 'tandem_embed');
  assert.ok(existsSync(tool), `${tool} is built with the server`);
  const d = mkdtempSync(join(tmpdir(), 'tandem-embed-'));
  try {
    writeFileSync(join(d, 'a.js'), 'x"\\\n\x00\xff');
    writeFileSync(join(d, 'empty.css'), '');
    const out = join(d, 'out.c');
    let r = spawnSync(tool, [out, `a.js=${join(d, 'a.js')}`, `e/empty.css=${join(d, 'empty.css')}`]);
    assert.equal(r.status, 0, String(r.stderr));
    const c = readFileSync(out, 'utf8');
    assert.match(c, /"a\.js", "text\/javascript; charset=utf-8", asset_0, 7,/);
    assert.match(c, /"e\/empty\.css", "text\/css; charset=utf-8", asset_1, 0,/);
    assert.match(c, /asset_0\[8\] = \{\n120,34,92,10,0,195,191,0\};/);
    assert.match(c, /api_dashboard_n_assets = 2;/);

    const out2 = join(d, 'out2.c');
    r = spawnSync(tool, [out2, `a.exe=${join(d, 'a.js')}`]);
    assert.equal(r.status, 1);
    assert.match(String(r.stderr), /no content type/);
    r = spawnSync(tool, [out2, `b.js=${join(d, 'missing.js')}`]);
    assert.equal(r.status, 1);
    assert.match(String(r.stderr), /cannot read .*missing\.js/);
    r = spawnSync(tool, [out2, 'b.js']);
    assert.equal(r.status, 1);
    assert.match(String(r.stderr), /NAME=PATH/);
    assert.ok(!existsSync(out2) && !existsSync(`${out2}.tmp`), 'a failed run leaves no output');
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

// ---- the browser ----

test('sign-in: a wrong password is refused, the superuser gets in', async () => {
  await page.goto(`${srv.url}/_/`);
  await page.fill('[data-testid=signin-email]', SU_EMAIL);
  await page.fill('[data-testid=signin-password]', 'wrong password');
  await page.click('[data-testid=signin-submit]');
  assert.equal(await testid('error'), 'Wrong email or password.');
  expectedFailure('400 /api/collections/_superusers/auth-with-password');
  await shot('signin');
  await page.fill('[data-testid=signin-password]', SU_PASSWORD);
  await page.click('[data-testid=signin-submit]');
  await page.locator('[data-testid=overview-total]').waitFor();
  assert.equal(await page.locator('#who').textContent(), SU_EMAIL);
});

test('overview: events, top events and pipeline lag match the API', async () => {
  await page.goto(`${srv.url}/_/#/overview`);
  const total = (await sql('SELECT count(*) FROM events')).rows[0][0];
  assert.equal(total, gen.events.length);
  assert.equal(num(await testid('overview-total')), total);
  // every event was received in the last few seconds, so within the 10-minute window
  assert.equal(num(await testid('overview-recent')), total);
  const metrics = await (await fetch(`${srv.url}/metrics`)).text();
  const accepted = Number(/^tandem_capture_events_total\{outcome="accepted"\} (\d+)$/m.exec(metrics)[1]);
  assert.equal(accepted, gen.events.length);
  assert.equal(num(await testid('overview-accepted')), accepted);

  const top = await sql('SELECT event, count(*) AS n FROM events WHERE event IS NOT NULL GROUP BY event ORDER BY n DESC, event LIMIT 10');
  assert.deepEqual(top.rows.map((r) => r[0]).sort(), ['activate', 'pageview', 'purchase', 'signup']);
  for (let i = 0; i < top.rows.length; i++) {
    assert.equal(await testid(`top-event-name-${i}`), top.rows[i][0]);
    assert.equal(num(await testid(`top-event-count-${i}`)), top.rows[i][1]);
  }
  assert.equal(top.rows.find((r) => r[0] === 'signup')[1], 40);

  const pipe = await api('GET', '/api/pipeline');
  assert.equal(num(await testid('pipeline-lag-records')), pipe.consumers.reduce((s, c) => s + c.lagRecords, 0));
  for (const c of pipe.consumers) {
    const row = page.locator(`[data-testid="pipeline-${c.consumer}"] td`);
    assert.equal(await row.nth(0).textContent(), c.consumer);
  }

  const rate = await chartState('chart-rate');
  assertDrawn(rate, 'events/s chart');
  assert.equal(rate.type, 'line');
  // the buckets add up to the events received in the window (events/s × 10 s per bucket)
  assert.equal(Math.round(rate.datasets[0].data.reduce((s, v) => s + v * 10, 0)), total);
  const topChart = await chartState('chart-top');
  assertDrawn(topChart, 'top events chart');
  assert.deepEqual(topChart.labels, top.rows.map((r) => r[0]));
  assert.deepEqual(topChart.datasets[0].data, top.rows.map((r) => r[1]));
  await shot('overview');

  // once the page is left, its 5 s refresh stops (and no second copy of it runs)
  let polls = 0;
  const onRequest = (req) => { if (req.url().endsWith('/api/pipeline')) polls++; };
  page.on('request', onRequest);
  await page.goto(`${srv.url}/_/#/sql`);
  await page.waitForTimeout(5500);
  page.off('request', onRequest);
  assert.equal(polls, 0, 'the overview still polls after it was left');
});

test('trends: a breakdown by plan matches the API and the generated signups', async () => {
  await page.goto(`${srv.url}/_/#/trends`);
  await page.locator('[data-testid=trends-count-0], [data-testid=error]').first().waitFor({ timeout: 15000 });
  await page.selectOption('.series-event >> nth=0', 'signup');
  await page.selectOption('[data-testid=trends-breakdown]', 'properties.plan');
  const body = await requestBody('/api/insights/trends', () => page.click('[data-testid=trends-run]'));
  assert.deepEqual(body.series, [{ event: 'signup', math: 'total' }]);
  assert.equal(body.breakdown, 'properties.plan');
  const want = await api('POST', '/api/insights/trends', body);
  assert.equal(want.results.length, 3);
  const plans = { free: count((u) => u.plan === 'free'), pro: count((u) => u.plan === 'pro'), team: count((u) => u.plan === 'team') };
  for (let i = 0; i < want.results.length; i++) {
    const r = want.results[i];
    assert.equal(r.count, plans[r.breakdown], `API count of ${r.breakdown}`);
    assert.equal(await testid(`trends-label-${i}`), `signup · ${r.breakdown}`);
    assert.equal(num(await testid(`trends-count-${i}`)), r.count);
  }
  const st = await chartState('trends-chart');
  assertDrawn(st, 'trends chart');
  assert.equal(st.type, 'line');
  assert.deepEqual(st.labels, want.results[0].labels);
  assert.deepEqual(st.datasets.map((d) => d.data), want.results.map((r) => r.data));
  await shot('trends');

  // two series, one with a property math, no breakdown
  await page.selectOption('[data-testid=trends-breakdown]', '');
  await page.click('[data-testid=trends-add-series]');
  await page.selectOption('.series-event >> nth=1', 'purchase');
  await page.selectOption('.series-math >> nth=1', 'sum');
  await page.fill('.series-prop >> nth=1', 'properties.amount');
  const body2 = await requestBody('/api/insights/trends', () => page.click('[data-testid=trends-run]'));
  assert.deepEqual(body2.series, [{ event: 'signup', math: 'total' }, { event: 'purchase', math: 'sum', mathProperty: 'properties.amount' }]);
  assert.equal(body2.breakdown, undefined);
  const want2 = await api('POST', '/api/insights/trends', body2);
  const amounts = gen.events.filter((e) => e.event === 'purchase').reduce((s, e) => s + e.properties.amount, 0);
  assert.deepEqual(want2.results.map((r) => r.count), [40, amounts]);
  for (let i = 0; i < 2; i++) {
    assert.equal(await testid(`trends-label-${i}`), want2.results[i].label);
    assert.equal(num(await testid(`trends-count-${i}`)), want2.results[i].count);
  }
  const st2 = await chartState('trends-chart');
  assertDrawn(st2, 'trends chart, two series');
  assert.deepEqual(st2.datasets.map((d) => d.data), want2.results.map((r) => r.data));

  // the query lives in the address: a reload asks the same and shows the same
  assert.match(page.url(), /#\/trends\?q=/);
  const again = await requestBody('/api/insights/trends', () => page.reload());
  assert.deepEqual(again, body2);
  for (let i = 0; i < 2; i++) assert.equal(num(await testid(`trends-count-${i}`)), want2.results[i].count);
  assert.equal(await page.inputValue('.series-prop >> nth=1'), 'properties.amount');
});

test('funnel: step counts match the API and the generated users', async () => {
  await page.goto(`${srv.url}/_/#/funnel`);
  await page.locator('[data-testid=funnel-count-0], [data-testid=error]').first().waitFor({ timeout: 15000 });
  while (await page.locator('.step-event').count() < 3) await page.click('[data-testid=funnel-add-step]');
  const steps = ['signup', 'activate', 'purchase'];
  for (let i = 0; i < 3; i++) await page.selectOption(`.step-event >> nth=${i}`, steps[i]);
  const body = await requestBody('/api/insights/funnel', () => page.click('[data-testid=funnel-run]'));
  assert.deepEqual(body.steps, steps.map((event) => ({ event })));
  const want = await api('POST', '/api/insights/funnel', body);
  const counts = want.results[0].steps.map((s) => s.count);
  assert.deepEqual(counts, [40, count((u) => u.activated), count((u) => u.purchased)]);
  for (let i = 0; i < 3; i++) {
    assert.equal(num(await testid(`funnel-count-${i}`)), counts[i]);
    assert.equal(await testid(`funnel-conversion-${i}`), `${(want.results[0].steps[i].conversionRate * 100).toFixed(1)}%`);
  }
  const st = await chartState('funnel-chart');
  assertDrawn(st, 'funnel chart');
  assert.equal(st.type, 'bar');
  assert.deepEqual(st.datasets[0].data, counts);
  await shot('funnel');
  const again = await requestBody('/api/insights/funnel', () => page.reload());
  assert.deepEqual(again, body);
  assert.equal(num(await testid('funnel-count-2')), counts[2]);
});

test('retention: cohort sizes match the API and the generated signups', async () => {
  await page.goto(`${srv.url}/_/#/retention`);
  await page.locator('[data-testid=retention-size-0], [data-testid=error]').first().waitFor({ timeout: 15000 });
  await page.selectOption('[data-testid=retention-target]', 'signup');
  await page.selectOption('[data-testid=retention-returning]', 'purchase');
  const body = await requestBody('/api/insights/retention', () => page.click('[data-testid=retention-run]'));
  assert.deepEqual(body.targetEvent, { event: 'signup' });
  const want = await api('POST', '/api/insights/retention', body);
  assert.equal(want.results.length, 7);
  for (let i = 0; i < 7; i++) {
    const c = want.results[i];
    const daysAgo = 6 - i;
    assert.equal(c.date, new Date(gen.today0 - daysAgo * DAY).toISOString().slice(0, 10));
    assert.equal(c.cohortSize, count((u) => u.daysAgo === daysAgo), `cohort ${c.date}`);
    assert.equal(await testid(`retention-date-${i}`), c.date);
    assert.equal(num(await testid(`retention-size-${i}`)), c.cohortSize);
    for (let k = 0; k < c.values.length; k++) {
      const cell = page.locator(`[data-testid="retention-cell-${i}-${k}"]`);
      assert.equal(num(await cell.locator('.cnt').textContent()), c.values[k].count);
    }
  }
  // day 1 of a cohort: the users who bought the day after signing up
  const c4 = want.results[2]; // the cohort of 4 days ago
  assert.equal(c4.values[1].count, count((u) => u.daysAgo === 4 && u.purchased));
  await shot('retention');
  await page.selectOption('[data-testid=retention-period]', 'week');
  const weekly = await requestBody('/api/insights/retention', () => page.click('[data-testid=retention-run]'));
  await testid('retention-size-0');
  const again = await requestBody('/api/insights/retention', () => page.reload());
  assert.deepEqual(again, weekly);
  assert.equal(again.period, 'week');
  assert.equal(await page.inputValue('[data-testid=retention-period]'), 'week');
});

test('stickiness: persons by days with a purchase match the API and the generated purchases', async () => {
  await page.goto(`${srv.url}/_/#/stickiness`);
  await page.locator('[data-testid=stickiness-count-0], [data-testid=error]').first().waitFor({ timeout: 15000 });
  await page.selectOption('[data-testid=stickiness-event]', 'purchase');
  const body = await requestBody('/api/insights/stickiness', () => page.click('[data-testid=stickiness-run]'));
  assert.deepEqual(body.series, [{ event: 'purchase' }]);
  const want = await api('POST', '/api/insights/stickiness', body);
  const r = want.results[0];
  assert.equal(r.count, count((u) => u.purchased));
  assert.deepEqual(r.data.slice(0, 2), [count((u) => u.purchased && !u.twice), count((u) => u.twice)]);
  assert.ok(r.data.slice(2).every((v) => v === 0));
  assert.equal(num(await testid('stickiness-count-0')), r.count);
  for (let k = 0; k < r.data.length; k++) assert.equal(num(await testid(`stickiness-0-${k}`)), r.data[k]);
  const st = await chartState('stickiness-chart');
  assertDrawn(st, 'stickiness chart');
  assert.deepEqual(st.datasets[0].data, r.data);
  await shot('stickiness');
});

test('lifecycle: statuses per day match the API; active person-days match the generated purchases', async () => {
  await page.goto(`${srv.url}/_/#/lifecycle`);
  await page.locator('[data-testid=lifecycle-total-new], [data-testid=error]').first().waitFor({ timeout: 15000 });
  await page.selectOption('[data-testid=lifecycle-event]', 'purchase');
  const body = await requestBody('/api/insights/lifecycle', () => page.click('[data-testid=lifecycle-run]'));
  const want = await api('POST', '/api/insights/lifecycle', body);
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  const by = Object.fromEntries(want.results.map((r) => [r.status, r.data]));
  assert.deepEqual(Object.keys(by).sort(), ['dormant', 'new', 'resurrecting', 'returning']);
  // every active (person, day) is new, returning or resurrecting
  assert.equal(sum(by.new) + sum(by.returning) + sum(by.resurrecting), count((u) => u.purchased) + count((u) => u.twice));
  assert.ok(sum(by.dormant) < 0);
  for (const [status, data] of Object.entries(by)) assert.equal(num(await testid(`lifecycle-total-${status}`)), sum(data));
  const st = await chartState('lifecycle-chart');
  assertDrawn(st, 'lifecycle chart');
  assert.deepEqual(Object.fromEntries(st.datasets.map((d) => [d.label, d.data])), by);
  await shot('lifecycle');
  const again = await requestBody('/api/insights/lifecycle', () => page.reload());
  assert.deepEqual(again, body);
  assert.equal(await page.inputValue('[data-testid=lifecycle-event]'), 'purchase');
});

test('SQL console: rows as a table and the same rows as CSV', async () => {
  await page.goto(`${srv.url}/_/#/sql`);
  const q = "SELECT event, count(*) AS n, min(properties->>'plan') AS plan, 'a,\"b\"' AS quoted FROM events WHERE event IS NOT NULL GROUP BY event ORDER BY event";
  await page.fill('[data-testid=sql-input]', q);
  await page.click('[data-testid=sql-run]');
  const want = await sql(q);
  assert.equal(num(await testid('sql-row-count')), want.rowCount);
  assert.equal(want.rowCount, 4);
  for (let i = 0; i < want.rowCount; i++) {
    for (let k = 0; k < want.columns.length; k++) {
      const v = want.rows[i][k];
      assert.equal(await testid(`sql-cell-${i}-${k}`), v === null ? '' : String(v));
    }
  }
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=sql-csv]')]);
  assert.equal(dl.suggestedFilename(), 'result.csv');
  const csv = readFileSync(await dl.path(), 'utf8');
  const field = (v) => { const s = v === null ? '' : String(v); return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; };
  const wantCsv = [want.columns.map((c) => field(c.name)), ...want.rows.map((r) => r.map(field))].map((r) => r.join(',')).join('\r\n') + '\r\n';
  assert.equal(csv, wantCsv);
  assert.match(csv, /^event,n,plan,quoted\r\nactivate,30,,"a,""b"""\r\n/);

  // an error from the warehouse is shown, not swallowed
  await page.fill('[data-testid=sql-input]', 'SELECT nope FROM events');
  await page.click('[data-testid=sql-run]');
  assert.match(await testid('error'), /nope/);
  expectedFailure('400 /api/warehouse/sql');
  await page.fill('[data-testid=sql-input]', q);
  await page.click('[data-testid=sql-run]');
  await testid('sql-row-count');
  await shot('sql');
});

test('collections: counts and paging through records match the API', async () => {
  await page.goto(`${srv.url}/_/#/collections`);
  for (const [name, n] of [['posts', 45], ['tags', 3]]) {
    const r = await api('GET', `/api/collections/${name}/records?perPage=1`);
    assert.equal(r.totalItems, n);
    assert.equal(num(await testid(`collection-count-${name}`)), n);
  }
  await shot('collections');
  await page.click('[data-testid=collection-link-posts]');
  assert.equal(num(await testid('records-total')), 45);
  assert.equal(await testid('records-pages'), '3');
  const seen = new Set();
  for (let p = 1; p <= 3; p++) {
    assert.equal(await testid('records-page'), String(p));
    const rows = page.locator('[data-testid=records] tbody tr');
    assert.equal(await rows.count(), p < 3 ? 20 : 5);
    for (const id of await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.testid.slice('record-'.length)))) seen.add(id);
    if (p === 1) await shot('records');
    if (p < 3) {
      await page.click('[data-testid=records-next]');
      await page.locator(`[data-testid=records-page]:text-is("${p + 1}")`).waitFor();
    }
  }
  const all = await api('GET', '/api/collections/posts/records?perPage=100');
  assert.deepEqual([...seen].sort(), all.items.map((r) => r.id).sort());
});

test('models: lineage, last runs, row counts and tests match the API', async () => {
  await api('POST', '/api/models', { name: 'dash_users', sql: "SELECT user_id, count(*) AS n FROM events WHERE user_id IS NOT NULL GROUP BY 1", tests: [{ type: 'unique', column: 'user_id' }] });
  await api('POST', '/api/models', { name: 'dash_top', sql: 'SELECT * FROM dash_users ORDER BY n DESC LIMIT 3', materialized: 'view', tests: [{ type: 'row_count', max: 2, severity: 'warn' }] });
  const queued = await fetch(`${srv.url}/api/models/dash_users/run`, { method: 'POST', headers: { Authorization: token, 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(queued.status, 202);
  let list;
  for (;;) { // dash_top runs after dash_users (downstream)
    list = await api('GET', '/api/models');
    if (list.items.every((m) => m.lastRun)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await page.goto(`${srv.url}/_/#/models`);
  await page.waitForSelector('[data-testid=lineage-dash_top]');
  for (const name of ['events', 'dash_users', 'dash_top']) assert.equal(await page.locator(`[data-testid=lineage-${name}]`).count(), 1, name);
  const byName = Object.fromEntries(list.items.map((m) => [m.name, m]));
  assert.equal(byName.dash_users.lastRun.status, 'success');
  assert.equal(byName.dash_top.lastRun.status, 'warn');
  await testid('model-dash_users');
  const cellsOf = (id) => page.locator(`[data-testid=${id}] td`).allTextContents();
  const users = await cellsOf('model-dash_users');
  assert.deepEqual([users[0], users[1], users[2]], ['dash_users', 'table', 'events']);
  assert.match(users[3], /^success · /);
  assert.equal(num(users[4]), byName.dash_users.lastRun.rows);
  assert.equal(users[5], '1 passed');
  const top = await cellsOf('model-dash_top');
  assert.deepEqual([top[1], top[2], top[5]], ['view', 'dash_users', '1 of 1 failed']);
  await shot('models');
  await page.click('[data-testid=model-link-dash_top]');
  await page.waitForSelector('[data-testid=tests]');
  const test0 = await page.locator('[data-testid=tests] tbody tr').first().locator('td').allTextContents();
  assert.deepEqual(test0.slice(0, 5), ['row_count', 'row_count', '', 'warn', 'fail']);
  const run0 = await page.locator('[data-testid=runs] tbody tr').first().locator('td').allTextContents();
  assert.deepEqual(run0.slice(0, 3), ['warn', 'upstream', 'view']);
  await shot('model');
});

test('a token the server refuses and signing out both lead back to the sign-in form', async () => {
  await page.goto(`${srv.url}/_/#/collections`);
  await testid('collection-count-posts');
  await page.evaluate(() => localStorage.setItem('tandem.token', 'not-a-token'));
  await page.goto(`${srv.url}/_/#/sql`);
  await page.click('[data-testid=sql-run]');
  await page.locator('[data-testid=signin-email]').waitFor();
  expectedFailure('401 /api/warehouse/sql');
  assert.equal(await page.evaluate(() => localStorage.getItem('tandem.token')), null);
  assert.equal(await page.locator('#top').isHidden(), true);

  await page.fill('[data-testid=signin-email]', SU_EMAIL);
  await page.fill('[data-testid=signin-password]', SU_PASSWORD);
  await page.click('[data-testid=signin-submit]');
  await testid('sql-input'); // back where it was
  await page.click('#signout');
  await page.locator('[data-testid=signin-email]').waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('tandem.token')), null);
});

test('the browser saw no errors, CSP violations or requests elsewhere', () => {
  assert.deepEqual(browserErrors, []);
});
