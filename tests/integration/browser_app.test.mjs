// A browser app on the unchanged pocketbase SDK, in headless Chromium (Debian's, driven by
// playwright-core): served by tandem itself from --public (same origin), and served by a
// second tandem on another port calling the first cross-origin (CORS, preflights, SSE). Both
// sign in, list under the rules, subscribe to realtime changes and send a batch.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { start } from './lib/server.mjs';
import { startWithSuperuser } from './lib/pb.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const require = createRequire(import.meta.url);
let api, su, web, pub, profile, context;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/setup-deps.sh (it installs Debian's chromium)`);
  // the app's files: our page and the SDK's browser build, as a real app would ship them
  pub = mkdtempSync(join(tmpdir(), 'tandem-app-'));
  for (const f of ['index.html', 'app.js']) copyFileSync(new URL(`./browser_app/${f}`, import.meta.url), join(pub, f));
  copyFileSync(join(require.resolve('pocketbase').replace(/dist\/.*$/, 'dist'), 'pocketbase.iife.js'), join(pub, 'pocketbase.iife.js'));

  ({ srv: api, pb: su } = await startWithSuperuser({ args: ['--public', pub] }));
  web = await start({ args: ['--public', pub] }); // another origin: only serves the files
  await su.settings.update({ batch: { enabled: true } });
  await su.collections.create({
    name: 'notes',
    fields: [{ name: 'title', type: 'text' }, { name: 'owner', type: 'text' }],
    listRule: 'owner = @request.auth.id', viewRule: 'owner = @request.auth.id',
    createRule: 'owner = @request.auth.id',
  });
  const app = await su.collection('users').create({ email: 'app@example.com', password: 'passw0rd-app', passwordConfirm: 'passw0rd-app' });
  const other = await su.collection('users').create({ email: 'other@example.com', password: 'passw0rd-oth', passwordConfirm: 'passw0rd-oth' });
  for (const t of ['a', 'b', 'c']) await su.collection('notes').create({ title: t, owner: app.id });
  for (const t of ['x', 'y']) await su.collection('notes').create({ title: t, owner: other.id });
  api.appUser = app.id;
  api.otherUser = other.id;

  profile = mkdtempSync(join(tmpdir(), 'tandem-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await context?.close();
  for (const d of [profile, pub]) if (d) rmSync(d, { recursive: true, force: true });
  await web?.stop();
  await api?.stop();
});

async function runApp(url) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  await page.goto(url);
  await page.waitForFunction(() => window.__subscribed || window.__result, null, { timeout: 20000 });
  // while the page listens: one note it may see and one it may not
  await su.collection('notes').create({ title: 'visible-' + url.length, owner: api.appUser });
  await su.collection('notes').create({ title: 'hidden-' + url.length, owner: api.otherUser });
  await page.evaluate(() => { window.__go = true; });
  await page.waitForFunction(() => window.__result, null, { timeout: 20000 });
  const res = await page.evaluate(() => window.__result);
  await page.close();
  return { res, errors };
}

function check({ res, errors }, url, origin) {
  assert.equal(res.error, undefined, `${url}: ${res.error}`);
  assert.deepEqual(errors, []);
  assert.equal(res.origin, origin);
  assert.deepEqual(res.listed.filter((t) => t.length === 1), ['a', 'b', 'c']); // not x, y
  assert.deepEqual(res.batch, [200, 200]);
  assert.deepEqual(res.seen, ['create:from-batch-1', 'create:from-batch-2', 'create:visible-' + url.length]);
}

test('an app served from --public on the same origin', async () => {
  const url = `${api.url}/`;
  check(await runApp(url), url, api.url);
});

test('an app on another origin calls the API cross-origin', async () => {
  const url = `${web.url}/?api=${encodeURIComponent(api.url)}`;
  const r = await runApp(url);
  assert.equal(r.res.api, api.url);
  check(r, url, web.url);
});
