// A retried event must not be acknowledged before the first copy is durable. The client
// sends a large batch A that holds messageId X and, while A waits for its sync, a retry B
// that holds only X. B is a duplicate, but its 200 may only come once X is durable, i.e.
// readable through the log API (readers see only durable records). Repeated with varying
// delays so that B lands inside A's sync in many rounds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { run, start, tempDir } from './lib/server.mjs';
import { createSuperuser, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';

let srv, dir, key, token;
const basic = (k) => 'Basic ' + Buffer.from(`${k}:`).toString('base64');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  dir = tempDir();
  const r = await run(['writekey', 'create', 'dups', '--dir', dir]);
  assert.equal(r.code, 0, r.stderr);
  key = r.stdout.trim();
  await createSuperuser(dir);
  srv = await start({ dir, args: ['--fsync', 'always'] });
  const s = await fetch(`${srv.url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ identity: SU_EMAIL, password: SU_PASSWORD }),
  });
  token = (await s.json()).token;
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

const send = (batch) => fetch(`${srv.url}/v1/batch`, {
  method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: basic(key) }, body: JSON.stringify({ batch }),
});

async function endOffset() {
  const r = await fetch(`${srv.url}/api/log/events?from=0&limit=1`, { headers: { Authorization: token } });
  return (await r.json()).endOffset;
}

// is messageId id readable in the log at or after offset from?
async function readable(from, id) {
  for (;;) {
    const r = await fetch(`${srv.url}/api/log/events?from=${from}&limit=1000`, { headers: { Authorization: token } });
    const page = await r.json();
    if (page.records.some((x) => x.value.messageId === id)) return true;
    if (page.records.length === 0 || page.nextOffset >= page.endOffset) return false;
    from = page.nextOffset;
  }
}

test('a duplicate is answered 200 only once its first copy is durable', async () => {
  const pad = 'd'.repeat(400);
  let early = 0;
  for (let round = 0; round < 40; round++) {
    const from = await endOffset();
    const x = `round${round}-x`;
    const a = Array.from({ length: 300 }, (_, i) => ({ type: 'track', event: 'A', userId: 'u', messageId: i === 0 ? x : `round${round}-a${i}`, properties: { pad } }));
    const pa = send(a);
    await sleep(round % 8);
    const rb = await send([{ type: 'track', event: 'A', userId: 'u', messageId: x }]);
    assert.equal(rb.status, 200);
    if (!(await readable(from, x))) early++;
    assert.equal((await pa).status, 200);
  }
  assert.equal(early, 0, `${early} of 40 duplicates were acknowledged before their first copy was durable`);
});
