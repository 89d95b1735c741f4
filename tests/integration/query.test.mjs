// `tandem query`: directly on the warehouse file, or through a running server's SQL API.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { run, start, tempDir } from './lib/server.mjs';
import { createSuperuser, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';

let dir, srv, key;

before(async () => {
  dir = tempDir();
  await createSuperuser(dir);
  key = (await run(['writekey', 'create', 'cli', '--dir', dir])).stdout.trim();
  srv = await start({ dir, keepDir: true });
  const body = { writeKey: key, batch: [1, 2, 3].map((i) => ({ type: 'track', userId: `u${i}`, event: 'Clicked', messageId: `q-${i}`, properties: { n: i } })) };
  const r = await fetch(`${srv.url}/v1/batch`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(r.status, 200);
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

// the events are in the warehouse within a few seconds of their acknowledgement
async function waitLoaded(args) {
  for (let i = 0; i < 100; i++) {
    const r = await run(['query', 'SELECT count(*) AS n FROM events', '--format', 'json', ...args]);
    if (r.code === 0 && JSON.parse(r.stdout).rows[0][0] === 3) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.fail('events never reached the warehouse');
}

test('through the running server: --url with --email/--password, or TANDEM_TOKEN', async () => {
  const creds = ['--url', srv.url, '--email', SU_EMAIL, '--password', SU_PASSWORD, '--dir', dir];
  await waitLoaded(creds);
  const t = await run(['query', "SELECT user_id, properties->>'n' AS n FROM events ORDER BY user_id", ...creds]);
  assert.equal(t.code, 0, t.stderr);
  assert.equal(t.stdout, 'user_id | n\n--------+--\nu1      | 1\nu2      | 2\nu3      | 3\n(3 rows)\n');
  const signin = await fetch(`${srv.url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ identity: SU_EMAIL, password: SU_PASSWORD }),
  });
  const token = (await signin.json()).token;
  const c = await run(['query', 'SELECT event, count(*) AS n FROM events GROUP BY event', '--url', srv.url, '--format', 'csv'], { env: { TANDEM_TOKEN: token } });
  assert.equal(c.code, 0, c.stderr);
  assert.equal(c.stdout, 'event,n\nClicked,3\n');
  // without --url the server holding the warehouse is found at --http
  const h = await run(['query', 'SELECT 1 AS one', '--dir', dir, '--http', srv.url.replace('http://', ''), '--format', 'csv'], { env: { TANDEM_TOKEN: token } });
  assert.equal(h.code, 0, h.stderr);
  assert.equal(h.stdout, 'one\n1\n');
});

test('errors: writes refused, bad SQL, wrong password, no credentials, bad format', async () => {
  const creds = ['--url', srv.url, '--email', SU_EMAIL, '--password', SU_PASSWORD];
  const w = await run(['query', 'DELETE FROM events', ...creds]);
  assert.equal(w.code, 1);
  assert.match(w.stderr, /^tandem: 400 Only read-only queries are allowed\./);
  const b = await run(['query', 'SELEC nonsense', ...creds]);
  assert.equal(b.code, 1);
  assert.match(b.stderr, /^tandem: 400 The query failed\.: .*syntax/i);
  const p = await run(['query', 'SELECT 1', '--url', srv.url, '--email', SU_EMAIL, '--password', 'not-the-password']);
  assert.equal(p.code, 1);
  assert.match(p.stderr, /cannot sign in/);
  const n = await run(['query', 'SELECT 1', '--dir', dir, '--http', srv.url.replace('http://', '')], { env: { TANDEM_TOKEN: '' } });
  assert.equal(n.code, 2);
  assert.match(n.stderr, /a server holds the warehouse/);
  const f = await run(['query', 'SELECT 1', '--dir', dir, '--format', 'xml']);
  assert.equal(f.code, 2);
  const u = await run(['query', '--dir', dir]);
  assert.equal(u.code, 2);
});

test('directly on the warehouse file when no server holds it', async () => {
  await srv.stop();
  try {
    const r = await run(['query', 'SELECT count(DISTINCT id) AS events FROM events', '--dir', dir, '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).rows[0][0], 3);
    const w = await run(['query', 'DROP TABLE events', '--dir', dir]);
    assert.equal(w.code, 1);
    assert.match(w.stderr, /read-only/);
    const again = await run(['query', 'SELECT count(*) FROM events', '--dir', dir, '--format', 'csv']);
    assert.equal(again.stdout.split('\n')[1], '3');
    const none = await run(['query', 'SELECT 1', '--dir', tempDir()]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no warehouse/);
  } finally {
    srv = await start({ dir, keepDir: true });
  }
});
