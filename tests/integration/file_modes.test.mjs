// The data directory is private: after records, events and a warehouse load, every file in it
// is 0600 at most and every directory 0700 - on a fresh directory, and on one an older version
// or an operator left open to group and others (0755 directory, 0644 files), which is fixed
// at start with a warning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, lstatSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run, start, tempDir } from './lib/server.mjs';
import { client, createSuperuser, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';

// {relative path: mode} of everything under dir (symbolic links by their own mode)
function modes(dir) {
  const out = {};
  const walk = (rel) => {
    for (const name of readdirSync(join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      // a temporary file of a running server (log/consumers.tmp) may go between the two calls
      const st = lstatSync(join(dir, r), { throwIfNoEntry: false });
      if (!st) continue;
      out[r] = { mode: st.mode & 0o7777, dir: st.isDirectory() };
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

function assertPrivate(dir, what) {
  const top = lstatSync(dir).mode & 0o7777;
  assert.equal(top, 0o700, `${what}: the data directory is ${top.toString(8)}`);
  const m = modes(dir);
  const open = Object.entries(m).filter(([, v]) => v.mode & 0o077).map(([k, v]) => `${k} ${v.mode.toString(8)}`);
  assert.deepEqual(open, [], `${what}: group or others can access these`);
  for (const [k, v] of Object.entries(m)) if (v.dir) assert.equal(v.mode, 0o700, `${what}: ${k}`);
  return m;
}

// Records, events and their warehouse load, so that every kind of file exists.
async function writeEverything(srv, key, tag) {
  const su = client(srv.url);
  await su.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  let notes;
  try {
    notes = await su.collections.getOne('notes');
  } catch {
    notes = await su.collections.create({ name: 'notes', fields: [{ name: 'body', type: 'text' }] });
  }
  await su.collection('notes').create({ body: `note ${tag}` });
  const r = await fetch(`${srv.url}/v1/batch`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ writeKey: key, batch: [{ type: 'track', userId: 'u', event: `E ${tag}`, messageId: `fm-${tag}` }] }),
  });
  assert.equal(r.status, 200, await r.text());
  // wait for the warehouse to load both the event and the record
  const deadline = Date.now() + 10000;
  for (;;) {
    const q = await fetch(`${srv.url}/api/warehouse/sql`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: su.authStore.token },
      body: JSON.stringify({ query: `SELECT (SELECT count(*) FROM events WHERE id = '${`fm-${tag}`}') + (SELECT count(*) FROM app_notes WHERE body = 'note ${tag}') AS n` }),
    });
    const j = await q.json();
    if (q.status === 200 && Number(j.rows[0][0]) === 2) break;
    assert.ok(Date.now() < deadline, `not loaded: ${JSON.stringify(j)}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

async function prepare(dir) {
  await createSuperuser(dir);
  const k = await run(['writekey', 'create', 'web', '--dir', dir]);
  assert.equal(k.code, 0, k.stderr);
  return k.stdout.trim();
}

test('a fresh data directory: every file 0600, every directory 0700', async () => {
  const dir = join(tempDir(), 'data'); // created by tandem itself
  const key = await prepare(dir);
  const srv = await start({ dir });
  try {
    await writeEverything(srv, key, 'fresh');
    const m = assertPrivate(dir, 'fresh, running');
    for (const f of ['app.db', 'app.db-wal', 'app.db-shm', 'secret', 'warehouse.duckdb']) assert.ok(m[f], `${f} exists`);
    assert.ok(Object.keys(m).some((k) => k.startsWith('log/') && !m[k].dir), 'log files exist');
  } finally {
    await srv.stop();
  }
  assertPrivate(dir, 'fresh, stopped');
  assert.doesNotMatch(srv.stderr(), /accessible by group or others/);
  rmSync(join(dir, '..'), { recursive: true, force: true });
});

test('a data directory open to group and others is made private at start, with a warning', async () => {
  const dir = tempDir();
  chmodSync(dir, 0o755);
  const key = await prepare(dir); // the CLI fixes the directory too
  assert.equal(lstatSync(dir).mode & 0o777, 0o700);
  let srv = await start({ dir });
  await writeEverything(srv, key, 'one');
  await srv.stop();
  // what an older version (umask 022) left: every directory 0755, every file 0644, but the
  // secret, which its own check keeps (a readable secret makes tandem refuse to start)
  const m = modes(dir);
  chmodSync(dir, 0o755);
  for (const [k, v] of Object.entries(m)) if (k !== 'secret') chmodSync(join(dir, k), v.dir ? 0o755 : 0o644);
  const n = Object.keys(m).length - 1;
  srv = await start({ dir });
  try {
    const err = srv.stderr();
    assert.match(err, /data directory .* was accessible by group or others \(mode 0755\): now 0700/);
    assert.match(err, new RegExp(`${n} files and directories under .* were accessible by group or others: now private`));
    assertPrivate(dir, 'fixed at start');
    await writeEverything(srv, key, 'two');
    assertPrivate(dir, 'after more writes');
  } finally {
    await srv.stop();
  }
  rmSync(dir, { recursive: true, force: true });
});

test('a secret that others could read still stops the server', async () => {
  const dir = tempDir();
  await prepare(dir);
  let srv = await start({ dir });
  await srv.stop();
  chmodSync(join(dir, 'secret'), 0o644);
  await assert.rejects(start({ dir }), /secret is accessible by group or others/);
  rmSync(dir, { recursive: true, force: true });
});
