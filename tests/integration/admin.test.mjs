// /api/crons and /api/backups through the real `pocketbase` SDK (pb.crons, pb.backups): the
// scheduled backup job from settings.backups.cron, create/list/download/upload/delete, bad
// input and callers answered as PocketBase does, and a backup taken while records and events
// keep arriving, then restored through the API (the server restarts itself): every record and
// event acknowledged before the backup is there exactly once, in the store, the log and the
// warehouse, and the pipeline goes on from the restored offsets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { run } from './lib/server.mjs';
import { client, expectStatus, startWithSuperuserAndKey } from './lib/pb.mjs';

const DEADLINE_MS = 30000;
let srv, pb, dir, key;

before(async () => {
  ({ srv, pb, dir, key } = await startWithSuperuserAndKey({ keepDir: true }));
  await pb.collections.create({ name: 'notes', type: 'base', fields: [{ name: 't', type: 'text' }], createRule: '', listRule: '' });
});
after(async () => {
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function eventually(what, fn) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    assert.ok(Date.now() - t0 < DEADLINE_MS, `timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function whSqlRaw(query) {
  const r = await fetch(`${srv.url}/api/warehouse/sql`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: pb.authStore.token }, body: JSON.stringify({ query }),
  });
  return { status: r.status, text: await r.text() };
}

async function whSql(query) {
  const r = await whSqlRaw(query);
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

async function caughtUp() {
  return eventually('the pipeline to catch up', async () => {
    const r = await fetch(`${srv.url}/api/pipeline`, { headers: { Authorization: pb.authStore.token } });
    const { consumers } = await r.json();
    const topics = consumers.map((c) => c.topic);
    const done = topics.includes('events') && topics.includes('changes') && consumers.every((c) => c.ready && c.lagRecords === 0 && !c.lastError);
    return done ? consumers : null;
  });
}

async function userClient() {
  await pb.collection('users').create({ email: 'u@example.com', password: 'password123', passwordConfirm: 'password123' }).catch(() => {});
  const u = client(srv.url);
  await u.collection('users').authWithPassword('u@example.com', 'password123');
  return u;
}

test('crons: the scheduled backup appears with settings.backups.cron, runs on demand, and goes away', async () => {
  const before = await pb.crons.getFullList();
  assert.ok(!before.some((j) => j.id === '__pbAutoBackup__'));
  assert.deepEqual(before.find((j) => j.id === '__pbDBOptimize__'), { id: '__pbDBOptimize__', expression: '0 0 * * *' });
  assert.equal(await pb.crons.run('__pbDBOptimize__'), true);
  assert.deepEqual(before.find((j) => j.id === '__tandemMailQueue__'), { id: '__tandemMailQueue__', expression: '* * * * *' });
  assert.equal(await pb.crons.run('__tandemMailQueue__'), true);
  await pb.settings.update({ backups: { cron: '0 3 * * *', cronMaxKeep: 1 } });
  const jobs = await pb.crons.getFullList();
  assert.deepEqual(jobs.find((j) => j.id === '__pbAutoBackup__'), { id: '__pbAutoBackup__', expression: '0 3 * * *' });

  // run twice on demand: maxKeep 1 leaves one scheduled backup
  assert.equal(await pb.crons.run('__pbAutoBackup__'), true);
  const first = await eventually('a scheduled backup', async () => (await pb.backups.getFullList()).find((b) => b.key.startsWith('auto_backup_')));
  await sleep(1100); // names carry the second
  assert.equal(await pb.crons.run('__pbAutoBackup__'), true);
  await eventually('the second scheduled backup, the first pruned', async () => {
    const autos = (await pb.backups.getFullList()).filter((b) => b.key.startsWith('auto_backup_'));
    return autos.length === 1 && autos[0].key !== first.key;
  });

  await expectStatus(pb.settings.update({ backups: { cron: 'every day' } }), 400);
  await expectStatus(pb.settings.update({ backups: { cron: '61 * * * *' } }), 400);
  await expectStatus(pb.settings.update({ backups: { cronMaxKeep: 0 } }), 400);
  await expectStatus(pb.settings.update({ backups: { s3: { enabled: true } } }), 400);
  await pb.settings.update({ backups: { cron: '' } });
  assert.ok(!(await pb.crons.getFullList()).some((j) => j.id === '__pbAutoBackup__'));
  for (const b of await pb.backups.getFullList()) if (b.key.startsWith('auto_backup_')) await pb.backups.delete(b.key);
});

test('crons: unknown job 404, guests 401, other users 403', async () => {
  const e = await expectStatus(pb.crons.run('nope'), 404);
  assert.equal(e.response.message, 'Missing or invalid cron job.');
  await expectStatus(pb.crons.run('x'.repeat(300)), 404);
  const guest = client(srv.url);
  await expectStatus(guest.crons.getFullList(), 401);
  await expectStatus(guest.crons.run('__pbAutoBackup__'), 401);
  const u = await userClient();
  await expectStatus(u.crons.getFullList(), 403);
});

test('backups: create, list, download, upload, delete', async () => {
  assert.equal(await pb.backups.create('first.tar.gz'), true);
  const list = await pb.backups.getFullList();
  const item = list.find((b) => b.key === 'first.tar.gz');
  assert.ok(item && item.size > 0 && /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$/.test(item.modified), JSON.stringify(list));
  assert.ok(existsSync(join(dir, 'backups', 'first.tar.gz')));

  // download with a file token in the link, as the SDK builds it; an auth token is no file token
  const fileToken = await pb.files.getToken();
  const url = pb.backups.getDownloadURL(fileToken, 'first.tar.gz');
  assert.equal((await fetch(pb.backups.getDownloadURL(pb.authStore.token, 'first.tar.gz'))).status, 403);
  const dl = await fetch(url);
  assert.equal(dl.status, 200);
  const bytes = new Uint8Array(await dl.arrayBuffer());
  assert.equal(bytes.length, item.size);
  assert.deepEqual([...bytes.slice(0, 2)], [0x1f, 0x8b]); // gzip
  assert.equal((await fetch(pb.backups.getDownloadURL('forged.token.x', 'first.tar.gz'))).status, 403);
  assert.equal((await fetch(pb.backups.getDownloadURL(fileToken, 'missing.tar.gz'))).status, 404);
  assert.equal((await fetch(pb.backups.getDownloadURL(fileToken, '..%2Fapp.db'))).status, 404);

  // the same bytes uploaded under another name
  const fd = new FormData();
  fd.append('file', new Blob([bytes]), 'copy.tar.gz');
  assert.equal(await pb.backups.upload(fd), true);
  const copy = (await pb.backups.getFullList()).find((b) => b.key === 'copy.tar.gz');
  assert.equal(copy.size, item.size);

  assert.equal(await pb.backups.delete('copy.tar.gz'), true);
  assert.ok(!(await pb.backups.getFullList()).some((b) => b.key === 'copy.tar.gz'));
  await pb.backups.delete('first.tar.gz');
});

test('backups: bad input is answered 400/401/403/404 and changes nothing', async () => {
  const before = await pb.backups.getFullList();
  for (const name of ['../x.tar.gz', 'UPPER.tar.gz', 'a.zip', '.tar.gz', 'a b.tar.gz', 'x'.repeat(200) + '.tar.gz']) {
    const e = await expectStatus(pb.backups.create(name), 400);
    assert.ok(e.response.data.name, JSON.stringify(e.response));
  }
  await expectStatus(pb.backups.create(42), 400);
  await pb.backups.create('dup.tar.gz');
  await expectStatus(pb.backups.create('dup.tar.gz'), 400);

  // uploads: no file, a file that is no archive, a bad name, a name that exists
  await expectStatus(pb.backups.upload(new FormData()), 400);
  const junk = new FormData();
  junk.append('file', new Blob([new Uint8Array(4096).fill(7)]), 'junk.tar.gz');
  await expectStatus(pb.backups.upload(junk), 400);
  const r = await fetch(`${srv.url}/api/backups/upload`, { method: 'POST', headers: { Authorization: pb.authStore.token, 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(r.status, 400);
  const badName = new FormData();
  badName.append('file', new Blob([new Uint8Array(10)]), 'bad name.zip');
  await expectStatus(pb.backups.upload(badName), 400);
  const dl = new Uint8Array(await (await fetch(pb.backups.getDownloadURL(await pb.files.getToken(), 'dup.tar.gz'))).arrayBuffer());
  const again = new FormData();
  again.append('file', new Blob([dl]), 'dup.tar.gz');
  await expectStatus(pb.backups.upload(again), 400);
  // past --max-body (32 MiB by default): 413 before the body is read (declared, not sent)
  const resp = await new Promise((resolve, reject) => {
    const sock = net.connect(srv.port, '127.0.0.1');
    let got = '';
    sock.on('data', (d) => { got += d; if (got.includes('\r\n\r\n')) { sock.destroy(); resolve(got); } });
    sock.on('error', reject);
    sock.write(`POST /api/backups/upload HTTP/1.1\r\nHost: x\r\nAuthorization: ${pb.authStore.token}\r\n` +
      `Content-Type: multipart/form-data; boundary=b\r\nContent-Length: ${33 << 20}\r\n\r\n`);
  });
  assert.match(resp, /^HTTP\/1\.1 413 /);
  // a truncated archive
  const cut = new FormData();
  cut.append('file', new Blob([dl.slice(0, Math.floor(dl.length / 2))]), 'cut.tar.gz');
  await expectStatus(pb.backups.upload(cut), 400);

  await expectStatus(pb.backups.delete('missing.tar.gz'), 400);
  await expectStatus(pb.backups.delete('x.zip'), 400);
  const e = await expectStatus(pb.backups.restore('missing.tar.gz'), 400);
  assert.equal(e.response.message, 'Missing or invalid backup file.');
  // an archive put there by hand that is no backup: refused, the server stays up
  writeFileSync(join(dir, 'backups', 'hand.tar.gz'), 'not a backup');
  const h = await expectStatus(pb.backups.restore('hand.tar.gz'), 400);
  assert.equal(h.response.message, 'Missing or invalid backup file.');
  assert.ok(h.response.data.file);
  assert.ok(!existsSync(join(dir, 'backups', '.restore')));
  await pb.backups.delete('hand.tar.gz');
  assert.equal((await pb.health.check()).code, 200);

  const guest = client(srv.url);
  await expectStatus(guest.backups.getFullList(), 401);
  await expectStatus(guest.backups.create('g.tar.gz'), 401);
  await expectStatus(guest.backups.delete('dup.tar.gz'), 401);
  await expectStatus(guest.backups.restore('dup.tar.gz'), 401);
  assert.equal((await fetch(`${srv.url}/api/backups/dup.tar.gz`)).status, 403);
  const u = await userClient();
  await expectStatus(u.backups.getFullList(), 403);
  await expectStatus(u.backups.create('u.tar.gz'), 403);
  assert.equal((await fetch(pb.backups.getDownloadURL(await u.files.getToken(), 'dup.tar.gz'))).status, 403);

  await pb.backups.delete('dup.tar.gz');
  assert.deepEqual((await pb.backups.getFullList()).map((b) => b.key).sort(), before.map((b) => b.key).sort());
});

test('a backup taken during steady writes, restored: everything acknowledged before it is there exactly once', async () => {
  const writer = client(srv.url);
  let stop = false;
  const records = []; // {id, at}
  const events = []; // {id, at}
  let serial = 0;
  const recordLoop = (async () => {
    while (!stop) {
      const r = await writer.collection('notes').create({ t: `n${serial++}` });
      records.push({ id: r.id, at: Date.now() });
    }
  })();
  const eventLoop = (async () => {
    let n = 0;
    while (!stop) {
      const batch = Array.from({ length: 20 }, () => ({ type: 'track', userId: 'bk', event: 'tick', messageId: `bk-${n++}` }));
      const res = await fetch(`${srv.url}/v1/batch`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ writeKey: key, batch }) });
      assert.equal(res.status, 200);
      const at = Date.now();
      for (const m of batch) events.push({ id: m.messageId, at });
    }
  })();
  await eventually('some writes', async () => records.length > 30 && events.length > 300);
  const startedAt = Date.now();
  assert.equal(await pb.backups.create('steady.tar.gz'), true);
  await eventually('writes after the backup', async () => records.some((r) => r.at > Date.now() - 5 && r.at > startedAt + 50));
  stop = true;
  await Promise.all([recordLoop, eventLoop]);
  const ackedRecords = records.filter((r) => r.at < startedAt).map((r) => r.id);
  const ackedEvents = events.filter((e) => e.at < startedAt).map((e) => e.id);
  assert.ok(ackedRecords.length > 0 && ackedEvents.length > 0);

  // restore through the API: the server answers, stops and starts again in the same process
  let out = '';
  srv.proc.stdout.on('data', (d) => { out += d; });
  assert.equal(await pb.backups.restore('steady.tar.gz'), true);
  const m = await eventually('the restarted server', async () => /tandem listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out));
  srv.url = m[1];
  pb = client(srv.url);
  await pb.collection('_superusers').authWithPassword('root@example.com', 'correct horse battery');

  // the store: every acknowledged record, each once; nothing written after the backup ended
  const notes = await pb.collection('notes').getFullList({ batch: 1000 });
  const ids = new Set(notes.map((n) => n.id));
  assert.equal(ids.size, notes.length);
  for (const id of ackedRecords) assert.ok(ids.has(id), `record ${id} acknowledged before the backup is missing`);
  assert.ok(notes.length < records.length, 'records written after the backup are not in it');

  // the warehouse, once the pipeline resumed: each event and change exactly once
  const consumers = await caughtUp();
  const ev = await whSql("SELECT id FROM events WHERE user_id = 'bk'");
  const evIds = ev.rows.map((r) => r[0]);
  assert.equal(new Set(evIds).size, evIds.length, 'an event was loaded twice');
  const evSet = new Set(evIds);
  for (const id of ackedEvents) assert.ok(evSet.has(id), `event ${id} acknowledged before the backup is missing`);
  const evCount = await whSql('SELECT count(*) FROM events');
  const eventsEnd = consumers.find((c) => c.topic === 'events').logEndOffset;
  assert.equal(evCount.rows[0][0], eventsEnd, 'every event in the restored log is loaded once');

  const creates = await whSql("SELECT record_id, count(*) FROM changes WHERE collection = 'notes' AND action = 'create' GROUP BY 1");
  assert.deepEqual(creates.rows.filter((r) => r[1] !== 1), [], 'a change was loaded twice');
  assert.deepEqual(creates.rows.map((r) => r[0]).sort(), [...ids].sort(), 'the changes match the store');
  const mirror = await whSql('SELECT id FROM app_notes');
  assert.deepEqual(mirror.rows.map((r) => r[0]).sort(), [...ids].sort(), 'the mirror matches the store');

  // and the pipeline goes on: a new record and event arrive once
  const fresh = await pb.collection('notes').create({ t: 'after restore' });
  const res = await fetch(`${srv.url}/v1/track`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ writeKey: key, userId: 'bk', event: 'tick', messageId: 'after-restore' }) });
  assert.equal(res.status, 200);
  const q = `SELECT (SELECT count(*) FROM events WHERE id = 'after-restore'), (SELECT count(*) FROM app_notes WHERE id = '${fresh.id}')`;
  await eventually('the new record and event in the warehouse', async () => {
    const r = (await whSql(q)).rows[0];
    return r[0] >= 1 && r[1] >= 1;
  });
  await caughtUp();
  assert.deepEqual((await whSql(q)).rows, [[1, 1]]);
  await pb.backups.delete('steady.tar.gz');
});

test('backups hold the uploaded files and the model files; a restore brings them back', async () => {
  const docs = await pb.collections.create({ name: 'bkdocs', type: 'base', fields: [{ name: 'f', type: 'file', maxSelect: 1, maxSize: 1 << 20 }], listRule: '', viewRule: '' });
  // a long original name: the stored path is longer than a tar header's 100 bytes
  const longName = `${'quarterly report '.repeat(6)}final.txt`;
  const kept = await pb.collection('bkdocs').create({ f: new File([new TextEncoder().encode('kept bytes')], longName, { type: 'text/plain' }) });
  const keptPath = join(dir, 'storage', docs.id, kept.id, kept.f);
  assert.ok(existsSync(keptPath) && join('storage', docs.id, kept.id, kept.f).length > 100);
  // a model file, as the ML module keeps them (<dir>/ml/<model>/v<N>.ubj)
  mkdirSync(join(dir, 'ml', 'bkprobe'), { recursive: true });
  writeFileSync(join(dir, 'ml', 'bkprobe', 'v1.ubj'), 'model v1');

  assert.equal(await pb.backups.create('files.tar.gz'), true);

  // after the backup: the kept record goes (its file with it), another comes, the model changes
  await pb.collection('bkdocs').delete(kept.id);
  assert.ok(!existsSync(keptPath));
  const later = await pb.collection('bkdocs').create({ f: new File([new TextEncoder().encode('later bytes')], 'later.txt', { type: 'text/plain' }) });
  const laterPath = join(dir, 'storage', docs.id, later.id, later.f);
  assert.ok(existsSync(laterPath));
  writeFileSync(join(dir, 'ml', 'bkprobe', 'v1.ubj'), 'model changed');
  writeFileSync(join(dir, 'ml', 'bkprobe', 'v2.ubj'), 'model v2');

  let out = '';
  srv.proc.stdout.on('data', (d) => { out += d; });
  assert.equal(await pb.backups.restore('files.tar.gz'), true);
  const m = await eventually('the restarted server', async () => /tandem listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out.slice(out.lastIndexOf('tandem listening'))));
  srv.url = m[1];
  pb = client(srv.url);
  await pb.collection('_superusers').authWithPassword('root@example.com', 'correct horse battery');

  // the kept record and its bytes are back, served as before
  const back = await pb.collection('bkdocs').getOne(kept.id);
  assert.equal(back.f, kept.f);
  const r = await fetch(pb.files.getURL(back, back.f));
  assert.equal(r.status, 200);
  assert.equal(await r.text(), 'kept bytes');
  // the later record is gone, and so is its file
  await expectStatus(pb.collection('bkdocs').getOne(later.id), 404);
  await eventually('the later file swept', async () => !existsSync(laterPath));
  // the model files are the backup's
  assert.equal(readFileSync(join(dir, 'ml', 'bkprobe', 'v1.ubj'), 'utf8'), 'model v1');
  assert.ok(!existsSync(join(dir, 'ml', 'bkprobe', 'v2.ubj')));
  rmSync(join(dir, 'ml', 'bkprobe'), { recursive: true, force: true });
  await pb.backups.delete('files.tar.gz');
});

test('sql console: reads in PocketBase\'s shape; writes reach the changes topic and the mirror exactly', async () => {
  await pb.collections.create({ name: 'kv', type: 'base', fields: [{ name: 'k', type: 'text' }, { name: 'v', type: 'number' }], indexes: ['CREATE UNIQUE INDEX idx_kv_k ON kv (k)'] });
  const r = await pb.sql.run("SELECT 1 AS one, NULL AS empty, 'x' AS s");
  assert.deepEqual(r.columns.map((c) => c.name), ['one', 'empty', 's']);
  assert.deepEqual(r.rows, [['1', null, 'x']]);
  assert.equal(r.affectedRows, 0);
  assert.equal(typeof r.execTime, 'number');

  const ins = await pb.sql.run("INSERT INTO kv (id, k, v) VALUES ('kv0000000000001', 'a', 1), ('kv0000000000002', 'b', 2), ('kv0000000000003', 'c', 3)");
  assert.equal(ins.affectedRows, 3);
  assert.equal((await pb.sql.run("UPDATE kv SET v = v * 10 WHERE k != 'c'")).affectedRows, 2);
  // REPLACE removes the row holding k = 'a' (another id) and inserts a new one
  await pb.sql.run("INSERT OR REPLACE INTO kv (id, k, v) VALUES ('kv0000000000004', 'a', 99)");
  await pb.sql.run("DELETE FROM kv WHERE k = 'b'");
  const store = (await pb.collection('kv').getFullList()).map((x) => [x.id, x.k, x.v]).sort();
  assert.deepEqual(store, [['kv0000000000003', 'c', 3], ['kv0000000000004', 'a', 99]]);

  const mirrorMatches = async () => {
    const m = await whSqlRaw('SELECT id, k, v FROM app_kv ORDER BY id'); // the mirror may not exist yet
    return m.status === 200 && JSON.stringify(JSON.parse(m.text).rows) === JSON.stringify(store);
  };
  await eventually('the mirror to match the store', mirrorMatches);
  const ch = await whSql("SELECT record_id, action FROM changes WHERE collection = 'kv' ORDER BY log_offset");
  assert.deepEqual(ch.rows, [
    ['kv0000000000001', 'create'], ['kv0000000000002', 'create'], ['kv0000000000003', 'create'],
    ['kv0000000000001', 'update'], ['kv0000000000002', 'update'],
    ['kv0000000000001', 'delete'], ['kv0000000000004', 'create'],
    ['kv0000000000002', 'delete'],
  ]);

  // a whole-table delete (SQLite's truncate path) is captured row by row too
  assert.equal((await pb.sql.run('DELETE FROM kv')).affectedRows, 2);
  assert.deepEqual(await pb.collection('kv').getFullList(), []);
  await eventually('the mirror to be empty', async () => (await whSql('SELECT count(*) FROM app_kv')).rows[0][0] === 0);

  // tables that are no collection may be made and changed
  await pb.sql.run('CREATE TABLE scratch (a INTEGER)');
  await pb.sql.run('INSERT INTO scratch VALUES (1), (2)');
  assert.deepEqual((await pb.sql.run('SELECT sum(a) AS s FROM scratch')).rows, [['3']]);
  await pb.sql.run('DROP TABLE scratch');
});

test('sql console: schema changes of collections and system tables, and bad input, are refused', async () => {
  for (const q of ['DROP TABLE kv', 'ALTER TABLE kv ADD COLUMN x TEXT', 'CREATE INDEX idx_x ON kv (v)', 'DROP INDEX idx_kv_k', 'CREATE TRIGGER t AFTER INSERT ON kv BEGIN SELECT 1; END']) {
    const e = await expectStatus(pb.sql.run(q), 400);
    assert.match(e.response.message, /kv is a collection table: change its schema through \/api\/collections/, q);
  }
  const refused = {
    'DELETE FROM _params': /system table _params/,
    'UPDATE _collections SET name = 1': /system table _collections/,
    'DROP TABLE _outbox': /_outbox is a system table/,
    "ATTACH '/tmp/x.db' AS x": /ATTACH/,
    'BEGIN': /Transaction control/,
    'PRAGMA journal_mode = DELETE': /PRAGMA journal_mode/,
    'SELECT 1; SELECT 2': /Only one statement/,
    'SELEC 1': /syntax error/,
  };
  for (const [q, re] of Object.entries(refused)) {
    const e = await expectStatus(pb.sql.run(q), 400);
    assert.match(e.response.message, re, q);
  }
  assert.ok((await pb.sql.run('PRAGMA table_info(kv)')).rows.length >= 3);
  await expectStatus(pb.sql.run(''), 400);
  await expectStatus(pb.sql.run('SELECT 1' + ' '.repeat(100001)), 400);
  const bad = await fetch(`${srv.url}/api/sql`, { method: 'POST', headers: { Authorization: pb.authStore.token, 'Content-Type': 'application/json' }, body: '{"query":' });
  assert.equal(bad.status, 400);
  const notString = await fetch(`${srv.url}/api/sql`, { method: 'POST', headers: { Authorization: pb.authStore.token, 'Content-Type': 'application/json' }, body: '{"query":42}' });
  assert.equal(notString.status, 400);
  await expectStatus(client(srv.url).sql.run('SELECT 1'), 401);
  await expectStatus((await userClient()).sql.run('SELECT 1'), 403);
  // nothing of it changed the catalog
  const kv = await pb.collections.getOne('kv');
  assert.deepEqual(kv.fields.map((f) => f.name).sort(), ['id', 'k', 'v']);
});

test('tandem backup create | list | restore on the command line (server stopped)', async () => {
  await pb.collection('notes').create({ t: 'cli-kept' });
  await caughtUp();
  await srv.stop();
  const made = await run(['backup', 'create', 'cli.tar.gz', '--dir', dir]);
  assert.equal(made.code, 0, made.stderr);
  assert.equal(made.stdout.trim(), join(dir, 'backups', 'cli.tar.gz'));
  const listed = await run(['backup', 'list', '--dir', dir]);
  assert.match(listed.stdout, /^cli\.tar\.gz\s+\d+\s+\d{4}-/m);
  assert.equal((await run(['backup', 'create', 'cli.tar.gz', '--dir', dir])).code, 1);
  assert.equal((await run(['backup', 'create', 'Bad Name', '--dir', dir])).code, 2);
  assert.equal((await run(['backup', 'restore', 'missing.tar.gz', '--dir', dir])).code, 1);
  assert.equal((await run(['backup', 'frobnicate', '--dir', dir])).code, 2);

  // a record made after the backup is gone after the restore
  const { start } = await import('./lib/server.mjs');
  srv = await start({ dir, keepDir: true });
  pb = client(srv.url);
  await pb.collection('_superusers').authWithPassword('root@example.com', 'correct horse battery');
  const later = await pb.collection('notes').create({ t: 'cli-later' });
  await srv.stop();
  const restored = await run(['backup', 'restore', 'cli.tar.gz', '--dir', dir]);
  assert.equal(restored.code, 0, restored.stderr);
  srv = await start({ dir });
  pb = client(srv.url);
  await pb.collection('_superusers').authWithPassword('root@example.com', 'correct horse battery');
  const all = await pb.collection('notes').getFullList({ batch: 1000 });
  assert.ok(all.some((n) => n.t === 'cli-kept'));
  assert.ok(!all.some((n) => n.id === later.id));
  await caughtUp();
  const mirror = await whSql(`SELECT count(*) FROM app_notes WHERE id = '${later.id}'`);
  assert.deepEqual(mirror.rows, [[0]]);
});
