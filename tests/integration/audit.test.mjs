// The audit trail (docs/governance.md "Audit trail"): superuser actions and sign-ins land in the
// `audit` log topic with who, when, from where and what, are loaded into the warehouse's
// `audit` table, and are hash-chained: `tandem audit verify` passes on the real trail, survives
// a restart, and names the offset of an entry edited on disk even when the record's CRC was
// recomputed (so the log's own checks pass and only the chain can tell).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { api, waitLoaded } from './lib/models.mjs';
import { SU_EMAIL, SU_PASSWORD, createSuperuser } from './lib/pb.mjs';
import { run, start, tempDir } from './lib/server.mjs';

const PROXY_IP = '203.0.113.9';

// CRC-32C (Castagnoli), as the log frames use it (docs/evlog.md "Record frame").
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32c(crc, buf) {
  crc = ~crc >>> 0;
  for (const b of buf) crc = (CRC_TABLE[(crc ^ b) & 0xff] ^ (crc >>> 8)) >>> 0;
  return ~crc >>> 0;
}

// The frames of one segment file: [{pos, len, offset}].
function frames(buf) {
  const out = [];
  for (let pos = 0; pos + 24 <= buf.length;) {
    const len = buf.readUInt32LE(pos);
    out.push({ pos, len, offset: Number(buf.readBigUInt64LE(pos + 8)) });
    pos += 24 + len;
  }
  return out;
}

async function signIn(url, password = SU_PASSWORD, headers = {}) {
  const res = await fetch(`${url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ identity: SU_EMAIL, password }),
  });
  return { status: res.status, json: await res.json() };
}

function verify(dir) {
  return run(['audit', 'verify', '--dir', dir]);
}

test('superuser actions are audited, loaded, chained; an edited entry is caught', async () => {
  const dir = tempDir();
  try {
    await createSuperuser(dir);
    let srv = await start({ dir });
    let s = await signIn(srv.url);
    assert.equal(s.status, 200);
    let A = { url: srv.url, token: s.json.token };
    // the client address through the trusted-proxy logic
    let r = await api(A, 'PATCH', '/api/settings', { trustedProxy: { headers: ['X-Real-IP'] } });
    assert.equal(r.status, 200, r.text);
    const viaProxy = { 'X-Real-IP': PROXY_IP };
    const call = async (method, path, body) => {
      const res = await fetch(`${srv.url}${path}`, {
        method,
        headers: { Authorization: A.token, 'Content-Type': 'application/json', ...viaProxy },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, json: await res.json().catch(() => null) };
    };
    r = await call('POST', '/api/collections', {
      name: 'notes', type: 'base', fields: [{ name: 'title', type: 'text' }],
      listRule: '', viewRule: '', createRule: '',
    });
    assert.equal(r.status, 200);
    r = await call('PATCH', '/api/settings', { smtp: { password: 'hunter2-never-logged' } });
    assert.equal(r.status, 200);
    r = await call('POST', '/api/capture/keys', { name: 'web' });
    assert.equal(r.status, 200);
    const writeKey = r.json.key;
    r = await call('POST', '/api/warehouse/sql', { query: 'SELECT 40 + 2 AS answer' });
    assert.equal(r.status, 200);
    r = await call('DELETE', '/api/collections/notes');
    assert.equal(r.status, 204);
    // a failed superuser sign-in, from the proxy's client
    const bad = await signIn(srv.url, 'wrong password', viaProxy);
    assert.equal(bad.status, 400);
    // what is not a superuser action leaves no entry: a guest's request, a superuser's read
    assert.equal((await fetch(`${srv.url}/api/collections`)).status, 401);
    assert.equal((await call('GET', '/api/collections')).status, 200);

    // loaded into the warehouse
    await waitLoaded(A, "SELECT count(*) FROM audit WHERE action = 'signin_failed'", 1);
    const rows = (await api(A, 'POST', '/api/warehouse/sql', {
      query: 'SELECT seq, action, method, route, status, actor_email, ip, summary::VARCHAR FROM audit ORDER BY seq',
    })).json.rows;
    const entries = rows.map(([seq, action, method, route, status, email, ip, summary]) => (
      { seq: Number(seq), action, method, route, status, email, ip, summary: summary ? JSON.parse(summary) : null }));
    entries.forEach((e, i) => assert.equal(e.seq, i));
    const find = (method, route) => entries.find((e) => e.method === method && e.route === route);
    assert.equal(entries[0].action, 'signin');
    assert.equal(entries[0].email, SU_EMAIL);
    assert.equal(entries[0].ip, '127.0.0.1');
    const coll = find('POST', '/api/collections');
    assert.equal(coll.email, SU_EMAIL);
    assert.equal(coll.ip, PROXY_IP);
    assert.equal(coll.status, 200);
    assert.equal(coll.summary.name, 'notes');
    const settings = entries.filter((e) => e.route === '/api/settings');
    assert.equal(settings.length, 2);
    assert.equal(settings[1].summary.smtp.password, '[redacted]');
    assert.equal(find('POST', '/api/capture/keys').summary.name, 'web');
    assert.equal(find('POST', '/api/warehouse/sql').summary.query, 'SELECT 40 + 2 AS answer');
    const del = find('DELETE', '/api/collections/{collection}');
    assert.equal(del.status, 204);
    const failed = entries.find((e) => e.action === 'signin_failed');
    assert.equal(failed.email, SU_EMAIL);
    assert.equal(failed.ip, PROXY_IP);
    assert.equal(failed.status, 400);
    assert.equal(entries.filter((e) => e.method === 'GET').length, 0);
    // no secret reached the log in any form
    await srv.stop();
    const segDir = join(dir, 'log', 'audit');
    const segs = readdirSync(segDir).filter((f) => f.endsWith('.seg'));
    const raw = Buffer.concat(segs.map((f) => readFileSync(join(segDir, f)))).toString('latin1');
    for (const secret of ['hunter2-never-logged', 'wrong password', SU_PASSWORD, writeKey])
      assert.equal(raw.includes(secret), false, `${secret} is in the audit log`);

    // every record of the topic is a link (the loader's polls above are audited too)
    const logged = segs.reduce((n, f) => n + frames(readFileSync(join(segDir, f))).length, 0);
    assert.ok(logged > entries.length);
    let v = await verify(dir);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, new RegExp(`audit chain ok: ${logged} entries`));

    // the chain goes on across a restart
    srv = await start({ dir });
    s = await signIn(srv.url);
    assert.equal(s.status, 200);
    A = { url: srv.url, token: s.json.token };
    r = await api(A, 'POST', '/api/collections', { name: 'again', type: 'base', fields: [] });
    assert.equal(r.status, 200, r.text);
    await srv.stop();
    v = await verify(dir);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, new RegExp(`audit chain ok: ${logged + 2} entries`));

    // edit one entry on disk: the collection create's IP, same length, frame CRC recomputed
    const seg = join(segDir, segs.sort()[0]);
    const buf = readFileSync(seg);
    const target = frames(buf).find((f) => buf.subarray(f.pos + 24, f.pos + 24 + f.len).toString().includes(`"ip":"${PROXY_IP}"`));
    assert.ok(target, 'an entry with the proxy address');
    const payload = buf.subarray(target.pos + 24, target.pos + 24 + target.len);
    const text = payload.toString();
    const edited = Buffer.from(text.replace(`"ip":"${PROXY_IP}"`, '"ip":"203.0.113.8"'));
    assert.equal(edited.length, payload.length);
    edited.copy(buf, target.pos + 24);
    let c = crc32c(0, edited);
    c = crc32c(c, buf.subarray(target.pos, target.pos + 4));
    c = crc32c(c, buf.subarray(target.pos + 8, target.pos + 24));
    buf.writeUInt32LE(c, target.pos + 4);
    writeFileSync(seg, buf);
    // the log itself finds nothing wrong: only the chain can
    const check = await run(['log', 'check', '--dir', dir]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    v = await verify(dir);
    assert.equal(v.code, 1, v.stdout + v.stderr);
    assert.match(v.stdout, new RegExp(`audit chain broken at offset ${target.offset}: the entry was changed`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a removed entry breaks the chain at the entry after it', async () => {
  const dir = tempDir();
  try {
    await createSuperuser(dir);
    const srv = await start({ dir });
    for (let i = 0; i < 4; i++) assert.equal((await signIn(srv.url, i % 2 ? 'nope' : SU_PASSWORD)).status, i % 2 ? 400 : 200);
    await srv.stop();
    assert.equal((await verify(dir)).code, 0);
    const segDir = join(dir, 'log', 'audit');
    const seg = join(segDir, readdirSync(segDir).filter((f) => f.endsWith('.seg')).sort()[0]);
    const buf = readFileSync(seg);
    const fr = frames(buf);
    assert.equal(fr.length, 4);
    // drop record 1; renumber the later ones and reseal them, as a careful attacker would
    const parts = [buf.subarray(0, fr[1].pos)];
    for (const f of fr.slice(2)) {
      const frame = Buffer.from(buf.subarray(f.pos, f.pos + 24 + f.len));
      frame.writeBigUInt64LE(BigInt(f.offset - 1), 8);
      let c = crc32c(0, frame.subarray(24));
      c = crc32c(c, frame.subarray(0, 4));
      c = crc32c(c, frame.subarray(8, 24));
      frame.writeUInt32LE(c, 4);
      parts.push(frame);
    }
    writeFileSync(seg, Buffer.concat(parts));
    const check = await run(['log', 'check', '--dir', dir]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    const v = await verify(dir);
    assert.equal(v.code, 1, v.stdout + v.stderr);
    assert.match(v.stdout, /audit chain broken at offset 1: prev .* an entry was removed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
