// The warehouse end to end: events captured with the Segment SDK and record changes made with
// the PocketBase SDK appear in `events`, `changes` and `app_<collection>` within 2 s with the
// documented column types; collection schema changes reach the mirrors; the SQL API's
// read-only guard, limits, errors, access rules and JSON type mapping.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Analytics } from '@segment/analytics-node';
import { start, tempDir } from './lib/server.mjs';
import { client, createSuperuser, startWithSuperuserAndKey, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';

const DEADLINE_MS = 2000;
let srv, dir, key, pb, token;

before(async () => {
  ({ srv, dir, key, pb, token } = await startWithSuperuserAndKey());
});
after(async () => { await srv?.stop(); });

// POST /api/warehouse/sql; returns {status, json, text}
async function sqlRaw(query, params, { url = srv.url, auth = token, body } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (auth) headers.Authorization = auth;
  const res = await fetch(`${url}/api/warehouse/sql`, { method: 'POST', headers, body: body ?? JSON.stringify(params === undefined ? { query } : { query, params }) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

async function sql(query, params) {
  const r = await sqlRaw(query, params);
  assert.equal(r.status, 200, `${query}: ${r.text}`);
  return r.json;
}

// Polls a query until check(result) is true; fails when that takes longer than DEADLINE_MS
// counted from `since` (the moment the data was acknowledged). Returns the result.
async function within(since, query, params, check) {
  for (;;) {
    const r = await sqlRaw(query, params);
    // a mirror table that does not exist yet is "not visible yet"; any other error fails
    if (r.status !== 200) assert.match(r.json?.data?.detail || '', /does not exist/, `${query}: ${r.text}`);
    const res = r.json;
    if (r.status === 200 && check(res)) return { res, ms: Date.now() - since };
    const ms = Date.now() - since;
    assert.ok(ms < DEADLINE_MS, `not visible after ${ms} ms: ${query} -> ${r.text.slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const colTypes = (res) => Object.fromEntries(res.columns.map((c) => [c.name, c.type]));
const rowObj = (res, i = 0) => Object.fromEntries(res.columns.map((c, k) => [c.name, res.rows[i][k]]));

async function mirrorColumns(table) {
  const r = await sql('SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position', [table]);
  return Object.fromEntries(r.rows);
}
async function tables() {
  const r = await sql("SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'app\\_%' ESCAPE '\\' ORDER BY 1");
  return r.rows.map((x) => x[0]);
}

test('Segment SDK events reach the events table within 2 s with their types', async () => {
  const analytics = new Analytics({ writeKey: key, host: srv.url, flushAt: 1, maxRetries: 3 });
  analytics.track({ userId: 'wu1', event: 'Order Completed', properties: { revenue: 42.5, items: [1, 2], coupon: null }, messageId: 'wh-track-1', timestamp: new Date('2026-03-04T05:06:07.089Z') });
  analytics.identify({ userId: 'wu1', traits: { plan: 'pro' }, messageId: 'wh-identify-1' });
  analytics.page({ anonymousId: 'wa1', name: 'Home', properties: { path: '/' }, messageId: 'wh-page-1' });
  analytics.group({ userId: 'wu1', groupId: 'acme', messageId: 'wh-group-1' });
  analytics.alias({ userId: 'wu1', previousId: 'wa1', messageId: 'wh-alias-1' });
  await analytics.closeAndFlush({ timeout: 10000 });
  const acked = Date.now();

  const { res, ms } = await within(acked, "SELECT * FROM events WHERE id LIKE 'wh-%' ORDER BY id", [], (r) => r.rowCount === 5);
  console.log(`events visible ${ms} ms after the SDK's flush`);
  assert.deepEqual(colTypes(res), {
    id: 'VARCHAR', type: 'VARCHAR', event: 'VARCHAR', user_id: 'VARCHAR', anonymous_id: 'VARCHAR', group_id: 'VARCHAR', previous_id: 'VARCHAR',
    timestamp: 'TIMESTAMP', original_timestamp: 'TIMESTAMP', sent_at: 'TIMESTAMP', received_at: 'TIMESTAMP',
    properties: 'JSON', traits: 'JSON', context: 'JSON', source: 'VARCHAR', log_offset: 'UBIGINT',
    did_key: 'UBIGINT', person_key: 'UBIGINT',
  });
  // the loader keys every event by its distinct id (docs/analytics.md, "The actor")
  const keyed = await sql("SELECT count(*) FILTER (WHERE did_key = tandem_key(coalesce(user_id, anonymous_id))), count(DISTINCT did_key) FROM events WHERE id LIKE 'wh-%'");
  assert.deepEqual(keyed.rows[0], [5, new Set(res.rows.map((_, i) => rowObj(res, i)).map((r) => r.user_id ?? r.anonymous_id)).size]);
  const rows = res.rows.map((_, i) => rowObj(res, i));
  const track = rows.find((r) => r.id === 'wh-track-1');
  assert.equal(track.type, 'track');
  assert.equal(track.event, 'Order Completed');
  assert.equal(track.user_id, 'wu1');
  assert.equal(track.anonymous_id, null);
  assert.deepEqual(track.properties, { revenue: 42.5, items: [1, 2], coupon: null });
  assert.equal(track.context.library.name, '@segment/analytics-node');
  assert.equal(track.source, 'web');
  assert.equal(track.original_timestamp, '2026-03-04T05:06:07.089Z');
  for (const c of ['timestamp', 'sent_at', 'received_at']) assert.match(track[c], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}(\d{3})?)?Z$/, c);
  assert.ok(Number.isInteger(track.log_offset));
  assert.deepEqual(rows.find((r) => r.id === 'wh-identify-1').traits, { plan: 'pro' });
  assert.equal(rows.find((r) => r.id === 'wh-page-1').anonymous_id, 'wa1');
  assert.equal(rows.find((r) => r.id === 'wh-group-1').group_id, 'acme');
  assert.equal(rows.find((r) => r.id === 'wh-alias-1').previous_id, 'wa1');
  // JSON operators on the columns
  const j = await sql("SELECT properties->>'revenue', (properties->'items'->>0)::INT, json_extract_string(context, '$.library.name') FROM events WHERE id = 'wh-track-1'");
  assert.deepEqual(j.rows, [['42.5', 1, '@segment/analytics-node']]);
});

test('64-bit integers stay exact through event properties, params and results', async () => {
  // JSON numbers above 2^53 cannot come from JS numbers; the raw text carries them
  const body = '{"writeKey":"' + key + '","userId":"big","event":"Big Ints","messageId":"wh-big-1","properties":{"n":9007199254740993,"m":-9223372036854775808}}';
  const r = await fetch(`${srv.url}/v1/track`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
  assert.equal(r.status, 200);
  const acked = Date.now();
  await within(acked, "SELECT 1 FROM events WHERE id = 'wh-big-1'", [], (x) => x.rowCount === 1);
  const q = await sqlRaw("SELECT properties, (properties->>'n')::BIGINT AS n, (properties->>'n')::BIGINT = $1 AS eq FROM events WHERE id = 'wh-big-1'", undefined, {
    body: '{"query":"SELECT properties, (properties->>\'n\')::BIGINT AS n, (properties->>\'n\')::BIGINT = $1 AS eq FROM events WHERE id = \'wh-big-1\'","params":[9007199254740993]}',
  });
  assert.equal(q.status, 200, q.text);
  assert.match(q.text, /"rows":\[\[\{"n":9007199254740993,"m":-9223372036854775808\},9007199254740993,true\]\]/);
  const p = await sqlRaw(null, undefined, { body: '{"query":"SELECT $1::BIGINT + 1 AS a, $2::BIGINT AS b","params":[9223372036854775806,-9223372036854775807]}' });
  assert.equal(p.status, 200, p.text);
  assert.match(p.text, /"rows":\[\[9223372036854775807,-9223372036854775807\]\]/);
});

let users;
test('PocketBase SDK record changes reach changes and app_<collection> within 2 s, every field type', async () => {
  try {
    users = await pb.collections.getOne('users');
  } catch {
    users = await pb.collections.create({ name: 'users', type: 'auth', fields: [{ name: 'name', type: 'text' }] });
  }
  const tags = await pb.collections.create({ name: 'tags', type: 'base', fields: [{ name: 'label', type: 'text' }] });
  const coll = await pb.collections.create({
    name: 'things', type: 'base', fields: [
      { name: 'title', type: 'text' },
      { name: 'count', type: 'number' },
      { name: 'done', type: 'bool' },
      { name: 'due', type: 'date' },
      { name: 'mail', type: 'email' },
      { name: 'site', type: 'url' },
      { name: 'status', type: 'select', values: ['draft', 'live'], maxSelect: 1 },
      { name: 'labels', type: 'select', values: ['a', 'b', 'c'], maxSelect: 3 },
      { name: 'owner', type: 'relation', collectionId: users.id, maxSelect: 1 },
      { name: 'refs', type: 'relation', collectionId: tags.id, maxSelect: 5 },
      { name: 'meta', type: 'json' },
      { name: 'created', type: 'autodate', onCreate: true, onUpdate: false },
      { name: 'updated', type: 'autodate', onCreate: true, onUpdate: true },
    ],
  });
  const u = await pb.collection('users').create({ email: 'wh-user@example.com', password: 'secret-pass-123', passwordConfirm: 'secret-pass-123', name: 'Wh User' });
  const t1 = await pb.collection('tags').create({ label: 't1' });
  const t2 = await pb.collection('tags').create({ label: 't2' });
  const rec = await pb.collection('things').create({
    title: 'first', count: 2.5, done: true, due: '2026-05-06 07:08:09.123Z', mail: 'a@example.com', site: 'https://example.com/x',
    status: 'live', labels: ['a', 'c'], owner: u.id, refs: [t1.id, t2.id], meta: { k: [1, 'two', null], big: '1' },
  });
  let acked = Date.now();
  let { res, ms } = await within(acked, 'SELECT * FROM app_things WHERE id = $1', [rec.id], (r) => r.rowCount === 1);
  console.log(`record visible in its mirror ${ms} ms after the create`);
  assert.deepEqual(colTypes(res), {
    id: 'VARCHAR', title: 'VARCHAR', count: 'DOUBLE', done: 'BOOLEAN', due: 'TIMESTAMP', mail: 'VARCHAR', site: 'VARCHAR',
    status: 'VARCHAR', labels: 'VARCHAR[]', owner: 'VARCHAR', refs: 'VARCHAR[]', meta: 'JSON', created: 'TIMESTAMP', updated: 'TIMESTAMP',
  });
  const row = rowObj(res);
  assert.deepEqual({ ...row, created: undefined, updated: undefined }, {
    id: rec.id, title: 'first', count: 2.5, done: true, due: '2026-05-06T07:08:09.123Z', mail: 'a@example.com', site: 'https://example.com/x',
    status: 'live', labels: ['a', 'c'], owner: u.id, refs: [t1.id, t2.id], meta: { k: [1, 'two', null], big: '1' }, created: undefined, updated: undefined,
  });
  assert.equal(Date.parse(row.created), Date.parse(rec.created.replace(' ', 'T')));
  // auth collection mirror: no password, no tokenKey
  const um = await within(acked, 'SELECT * FROM app_users WHERE id = $1', [u.id], (r) => r.rowCount === 1);
  const ucols = Object.keys(colTypes(um.res));
  assert.ok(ucols.includes('email') && ucols.includes('name'), ucols.join());
  assert.ok(!ucols.includes('password') && !ucols.includes('tokenKey'), ucols.join());
  assert.equal(rowObj(um.res).email, 'wh-user@example.com');
  assert.equal(rowObj(um.res).verified, false);

  // update: the mirror follows, every type again
  await pb.collection('things').update(rec.id, { title: 'second', count: -7, done: false, due: '', labels: ['b'], refs: [], meta: [1, 2], owner: '' });
  acked = Date.now();
  ({ res } = await within(acked, 'SELECT title, count, done, due, labels, refs, meta, owner FROM app_things WHERE id = $1', [rec.id], (r) => r.rows[0]?.[0] === 'second'));
  assert.deepEqual(res.rows[0], ['second', -7, false, null, ['b'], [], [1, 2], '']);

  // changes: create, update; then delete
  await pb.collection('things').delete(rec.id);
  acked = Date.now();
  await within(acked, 'SELECT count(*) FROM app_things WHERE id = $1', [rec.id], (r) => r.rows[0][0] === 0);
  ({ res } = await within(acked, 'SELECT * FROM changes WHERE record_id = $1 ORDER BY log_offset', [rec.id], (r) => r.rowCount === 3));
  assert.deepEqual(colTypes(res), { id: 'BIGINT', collection: 'VARCHAR', collection_id: 'VARCHAR', record_id: 'VARCHAR', action: 'VARCHAR', record: 'JSON', changed_at: 'TIMESTAMP', log_offset: 'UBIGINT' });
  const ch = res.rows.map((_, i) => rowObj(res, i));
  assert.deepEqual(ch.map((c) => c.action), ['create', 'update', 'delete']);
  assert.ok(ch.every((c) => c.collection === 'things' && c.collection_id === coll.id));
  assert.equal(ch[0].record.title, 'first');
  assert.deepEqual(ch[0].record.labels, ['a', 'c']);
  assert.equal(ch[1].record.title, 'second');
  // a delete carries the record as it was when deleted
  assert.equal(ch[2].record.title, 'second');
  assert.equal(ch[2].record.id, rec.id);
  assert.ok(ch[0].id < ch[1].id && ch[1].id < ch[2].id);
  assert.match(ch[0].changed_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);

  // events joined with application data
  const ev = `{"writeKey":"${key}","userId":"${u.id}","event":"Joined","messageId":"wh-join-1","properties":{"amount":12.5}}`;
  assert.equal((await fetch(`${srv.url}/v1/track`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: ev })).status, 200);
  acked = Date.now();
  ({ res } = await within(acked, "SELECT u.email, u.name, e.event, (e.properties->>'amount')::DOUBLE AS amount FROM events e JOIN app_users u ON u.id = e.user_id WHERE e.id = 'wh-join-1'", [], (r) => r.rowCount === 1));
  assert.deepEqual(res.rows, [['wh-user@example.com', 'Wh User', 'Joined', 12.5]]);
});

test('collection schema changes reach the mirror', async () => {
  const coll = await pb.collections.create({ name: 'evolving', type: 'base', fields: [{ name: 'a', type: 'text' }, { name: 'b', type: 'number' }] });
  const r1 = await pb.collection('evolving').create({ a: 'x', b: 1 });
  let acked = Date.now();
  await within(acked, 'SELECT a, b FROM app_evolving', [], (r) => r.rowCount === 1);

  // add a field
  let c = await pb.collections.getOne(coll.id);
  await pb.collections.update(coll.id, { fields: [...c.fields, { name: 'flag', type: 'bool' }] });
  acked = Date.now();
  await within(acked, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'app_evolving' AND column_name = 'flag'", [], (r) => r.rows[0][0] === 1);
  assert.equal((await mirrorColumns('app_evolving')).flag, 'BOOLEAN');
  const r2 = await pb.collection('evolving').create({ a: 'y', b: 2, flag: true });
  acked = Date.now();
  await within(acked, 'SELECT flag FROM app_evolving WHERE id = $1', [r2.id], (r) => r.rows[0]?.[0] === true);

  // rename a field: the values stay
  c = await pb.collections.getOne(coll.id);
  await pb.collections.update(coll.id, { fields: c.fields.map((f) => (f.name === 'a' ? { ...f, name: 'alpha' } : f)) });
  acked = Date.now();
  const { res } = await within(acked, 'SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY 1', ['app_evolving'], (r) => r.rows.some((x) => x[0] === 'alpha'));
  assert.ok(!res.rows.some((x) => x[0] === 'a'));
  assert.deepEqual((await sql('SELECT alpha FROM app_evolving WHERE id = $1', [r1.id])).rows, [['x']]);

  // remove a field
  c = await pb.collections.getOne(coll.id);
  await pb.collections.update(coll.id, { fields: c.fields.filter((f) => f.name !== 'b') });
  acked = Date.now();
  await within(acked, 'SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = $2', ['app_evolving', 'b'], (r) => r.rows[0][0] === 0);
  assert.deepEqual(Object.keys(await mirrorColumns('app_evolving')).sort(), ['alpha', 'flag', 'id']);

  // rename the collection: the table follows with its rows
  await pb.collections.update(coll.id, { name: 'evolved' });
  acked = Date.now();
  await (async () => {
    for (;;) {
      const t = await tables();
      if (t.includes('app_evolved') && !t.includes('app_evolving')) return;
      assert.ok(Date.now() - acked < DEADLINE_MS, `rename not mirrored: ${t}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  assert.deepEqual((await sql('SELECT id, alpha, flag FROM app_evolved ORDER BY alpha')).rows, [[r1.id, 'x', null], [r2.id, 'y', true]]);
  await pb.collection('evolved').update(r1.id, { alpha: 'x2' });
  acked = Date.now();
  await within(acked, 'SELECT alpha FROM app_evolved WHERE id = $1', [r1.id], (r) => r.rows[0]?.[0] === 'x2');

  // delete the collection: the table goes
  await pb.collections.delete(coll.id);
  acked = Date.now();
  for (;;) {
    const t = await tables();
    if (!t.includes('app_evolved')) break;
    assert.ok(Date.now() - acked < DEADLINE_MS, `drop not mirrored: ${t}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const gone = await sqlRaw('SELECT * FROM app_evolved');
  assert.equal(gone.status, 400);
});

test('/api/pipeline reports zero lag after catch-up', async () => {
  const t0 = Date.now();
  for (;;) {
    const r = await fetch(`${srv.url}/api/pipeline`, { headers: { Authorization: token } });
    assert.equal(r.status, 200);
    const { consumers: all } = await r.json();
    assert.deepEqual(all.map((c) => c.topic).sort(), ['audit', 'changes', 'events', 'predictions', 'requests']);
    // none served here; the request logs and the audit trail grow with every request, this one included
    const consumers = all.filter((c) => c.topic === 'events' || c.topic === 'changes');
    if (consumers.every((c) => c.ready && c.lagRecords === 0 && c.committedOffset === c.logEndOffset)) {
      for (const c of consumers) {
        assert.equal(c.lagSeconds, 0);
        assert.equal(c.lastError, null);
        assert.ok(c.rowsLoaded > 0 && c.committedOffset > 0, JSON.stringify(c));
      }
      const off = await sql("SELECT consumer, next_offset FROM _offsets WHERE consumer IN ('warehouse-events', 'warehouse-changes') ORDER BY 1");
      assert.deepEqual(off.rows, consumers.map((c) => [c.consumer, c.committedOffset]).sort());
      return;
    }
    assert.ok(Date.now() - t0 < DEADLINE_MS, JSON.stringify(consumers));
    await new Promise((r) => setTimeout(r, 20));
  }
});

test('SQL API: the read-only guard refuses every write and multiple statements', async () => {
  const refused = [
    "INSERT INTO events (id) VALUES ('x')",
    "UPDATE events SET id = 'x'",
    'DELETE FROM events',
    'CREATE TABLE t (a INT)',
    'CREATE VIEW v AS SELECT 1',
    'DROP TABLE events',
    'ALTER TABLE events ADD COLUMN z INT',
    "ATTACH 'other.db' AS other",
    "COPY events TO 'out.csv'",
    'INSTALL httpfs',
    'LOAD httpfs',
    "SET threads = 1",
    'PRAGMA threads=1',
    'CHECKPOINT',
    'BEGIN TRANSACTION',
    'EXPLAIN ANALYZE SELECT 1',
    'SELECT 1; SELECT 2',
    "SELECT 1; DROP TABLE events",
  ];
  for (const q of refused) {
    const r = await sqlRaw(q);
    assert.equal(r.status, 400, `${q}: ${r.text}`);
    assert.deepEqual(Object.keys(r.json).sort(), ['data', 'message', 'status'], q);
    assert.equal(r.json.status, 400);
  }
  const side = await sqlRaw("SELECT nextval('nosuchseq')");
  assert.equal(side.status, 400);
  // the table is untouched; reading statements pass
  assert.ok((await sql('SELECT count(*) FROM events')).rows[0][0] > 0);
  for (const q of ['WITH x AS (SELECT 1 AS a) SELECT a FROM x', 'FROM _offsets', 'DESCRIBE events', 'SHOW TABLES', "PRAGMA table_info('events')"]) {
    const r = await sqlRaw(q);
    assert.equal(r.status, 200, `${q}: ${r.text}`);
  }
});

test('SQL API: bad SQL, malformed bodies, guests and users', async () => {
  const bad = await sqlRaw('SELEC 1');
  assert.equal(bad.status, 400);
  assert.match(bad.json.data.detail, /syntax error/i);
  const missing = await sqlRaw('SELECT * FROM no_such_table');
  assert.equal(missing.status, 400);
  assert.match(missing.json.data.detail, /no_such_table/);

  for (const body of ['{"query":', '[]', '{}', '{"query":""}', '{"query":5}', '{"query":"SELECT 1","params":{"a":1}}', '{"query":"SELECT 1","params":"x"}']) {
    const r = await sqlRaw(null, undefined, { body });
    assert.equal(r.status, 400, `${body}: ${r.text}`);
    assert.equal(r.json.status, 400);
  }
  assert.equal((await sqlRaw('SELECT 1', undefined, { auth: null })).status, 401);
  assert.equal((await fetch(`${srv.url}/api/pipeline`)).status, 401);
  const upb = client(srv.url);
  await upb.collection('users').authWithPassword('wh-user@example.com', 'secret-pass-123');
  assert.equal((await sqlRaw('SELECT 1', undefined, { auth: upb.authStore.token })).status, 403);
  assert.equal((await fetch(`${srv.url}/api/pipeline`, { headers: { Authorization: upb.authStore.token } })).status, 403);
});

test('SQL API: params bind as their JSON types', async () => {
  const r = await sql('SELECT $1 IS NULL, $2, $3, $4, $5, $6::JSON', [null, true, 42, 1.5, 'text', { a: [1] }]);
  assert.deepEqual(r.rows, [[true, true, 42, 1.5, 'text', { a: [1] }]]);
  const t = await sql("SELECT count(*) FROM events WHERE id = ?", ['wh-track-1']);
  assert.deepEqual(t.rows, [[1]]);
});

test('SQL API: type mapping', async () => {
  const r = await sql(`SELECT
      9223372036854775807::BIGINT AS big,
      170141183460469231731687303715884105727::HUGEINT AS huge,
      18446744073709551615::UBIGINT AS ubig,
      12.34::DECIMAL(10,2) AS dec,
      '2024-01-02 03:04:05.678'::TIMESTAMP AS ts,
      '2024-01-02 03:04:05.678901'::TIMESTAMP AS tsus,
      '2024-02-29'::DATE AS d,
      '{"a":[1,2,{"b":null}]}'::JSON AS j,
      [1, 2, 3] AS l,
      {'x': 1, 'y': 'two'} AS s,
      NULL AS n,
      true AS b,
      1.5::DOUBLE AS dbl,
      'NaN'::DOUBLE AS nan,
      'héllo' AS v`);
  assert.deepEqual(colTypes(r), {
    big: 'BIGINT', huge: 'HUGEINT', ubig: 'UBIGINT', dec: 'DECIMAL(10,2)', ts: 'TIMESTAMP', tsus: 'TIMESTAMP', d: 'DATE', j: 'JSON',
    l: 'INTEGER[]', s: 'STRUCT("x" INTEGER, "y" VARCHAR)', n: 'INTEGER', b: 'BOOLEAN', dbl: 'DOUBLE', nan: 'DOUBLE', v: 'VARCHAR',
  });
  const o = rowObj(r);
  assert.equal(o.huge, '170141183460469231731687303715884105727');
  assert.equal(o.ubig, '18446744073709551615');
  assert.equal(o.dec, '12.34');
  assert.equal(o.ts, '2024-01-02T03:04:05.678Z');
  assert.equal(o.tsus, '2024-01-02T03:04:05.678901Z');
  assert.equal(o.d, '2024-02-29');
  assert.deepEqual(o.j, { a: [1, 2, { b: null }] });
  assert.deepEqual(o.l, [1, 2, 3]);
  assert.deepEqual(o.s, { x: 1, y: 'two' });
  assert.equal(o.n, null);
  assert.equal(o.b, true);
  assert.equal(o.dbl, 1.5);
  assert.equal(o.nan, 'NaN');
  assert.equal(o.v, 'héllo');
  // BIGINT exactly, not through a double
  const raw = await sqlRaw('SELECT 9007199254740993::BIGINT AS x, 9223372036854775807::BIGINT AS y');
  assert.match(raw.text, /"rows":\[\[9007199254740993,9223372036854775807\]\]/);
});

test('SQL API: --sql-timeout and --sql-max-rows', async () => {
  const d2 = tempDir();
  await createSuperuser(d2);
  const s2 = await start({ dir: d2, args: ['--sql-timeout', '1s', '--sql-max-rows', '5'] });
  try {
    const p2 = client(s2.url);
    await p2.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
    const opts = { url: s2.url, auth: p2.authStore.token };
    const t0 = Date.now();
    const slow = await sqlRaw('SELECT count(*) FROM range(100000000000) a(x) WHERE x % 7 = 3', undefined, opts);
    const took = Date.now() - t0;
    assert.equal(slow.status, 400, slow.text);
    assert.match(slow.json.message, /timeout/);
    assert.ok(took >= 900 && took < 5000, `the timeout fired after ${took} ms`);
    const few = await sqlRaw('SELECT * FROM range(5)', undefined, opts);
    assert.equal(few.json.truncated, false);
    assert.equal(few.json.rowCount, 5);
    const many = await sqlRaw('SELECT * FROM range(100)', undefined, opts);
    assert.equal(many.status, 200);
    assert.equal(many.json.truncated, true);
    assert.equal(many.json.rowCount, 5);
    assert.deepEqual(many.json.rows, [[0], [1], [2], [3], [4]]);
    // the connection is usable after the interrupted query
    assert.equal((await sqlRaw('SELECT 42', undefined, opts)).json.rows[0][0], 42);
  } finally {
    await s2.stop();
  }
});

// Every event capture acknowledges reaches `events` (none only in `_rejects`): each shape capture
// accepts, through the Segment and PostHog endpoints, at the nesting limit both share; one
// level deeper is refused at capture with 400.
test('capture and loader accept the same events: every acknowledged shape reaches events', async () => {
  const LIMIT = 64; // CAPTURE_MAX_DEPTH: properties itself is level 1
  const nest = (levels) => (levels <= 1 ? { leaf: true } : { d: nest(levels - 1) });
  const nestArr = (levels) => (levels <= 1 ? [1] : [nestArr(levels - 1)]);
  const post = (path, body) => fetch(`${srv.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const wide = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, i]));
  const shapes = {
    deep: nest(LIMIT),
    deepFast: nest(LIMIT - 2), // a batch at the fast path's own limit
    deepArr: { a: nestArr(LIMIT - 1) },
    numbers: { max: 1.7976931348623157e308, tiny: 5e-324, big: 9007199254740993n, neg: -9223372036854775808n, zero: 0, frac: 0.1 },
    unicode: { 'ключ 😀': 'héllo 中文 \u2028 \u0001 "q" \\', e: 'é' },
    empty: {},
    emptyNested: { o: {}, a: [], s: '' },
    long: { s: 'x'.repeat(15000) },
    wide,
  };
  // BigInt survives as an exact integer in the JSON text
  const text = (o) => JSON.stringify(o, (k, v) => (typeof v === 'bigint' ? `@@${v}@@` : v)).replace(/"@@(-?\d+)@@"/g, '$1');
  const postText = (path, obj) => fetch(`${srv.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: text(obj) });
  const sent = [];
  for (const [name, props] of Object.entries(shapes)) {
    const ids = [`acc-${name}-batch`, `acc-${name}-track`, `acc-${name}-phbatch`, `acc-${name}-phe`];
    const rs = [
      await postText('/v1/batch', { writeKey: key, batch: [{ type: 'track', userId: 'acc', event: name, messageId: ids[0], properties: props, context: props }] }),
      await postText('/v1/track', { writeKey: key, userId: 'acc', event: name, messageId: ids[1], properties: props, traits: props }),
      await postText('/batch/', { api_key: key, batch: [{ event: name, distinct_id: 'acc', uuid: ids[2], properties: props }] }),
      await postText('/e/', { token: key, event: name, distinct_id: 'acc', uuid: ids[3], properties: props }),
    ];
    for (let i = 0; i < rs.length; i++) assert.equal(rs[i].status, 200, `${ids[i]}: ${await rs[i].text()}`);
    sent.push(...ids);
  }
  // one level over the limit: a clear 400 at capture, on every endpoint and in each object
  const over = nest(LIMIT + 1);
  for (const [path, body] of [
    ['/v1/batch', { writeKey: key, batch: [{ type: 'track', userId: 'acc', event: 'over', properties: over }] }],
    ['/v1/track', { writeKey: key, userId: 'acc', event: 'over', properties: over }],
    ['/v1/identify', { writeKey: key, userId: 'acc', traits: over }],
    ['/v1/track', { writeKey: key, userId: 'acc', event: 'over', context: over }],
    ['/batch/', { api_key: key, batch: [{ event: 'over', distinct_id: 'acc', properties: over }] }],
    ['/e/', { token: key, event: 'over', distinct_id: 'acc', properties: { $set: over } }],
  ]) {
    const r = await post(path, body);
    const t = await r.text();
    assert.equal(r.status, 400, `${path}: ${t}`);
    assert.match(t, /nested deeper than 64 levels/, path);
  }
  // every acknowledged event is in events, none in _rejects
  const since = Date.now();
  for (;;) {
    const r = await sql("SELECT count(*) FROM events WHERE id LIKE 'acc-%'");
    if (r.rows[0][0] === sent.length) break;
    const rej = await sql("SELECT reason FROM _rejects WHERE topic = 'events' AND decode(payload) LIKE '%acc-%' LIMIT 1");
    assert.equal(rej.rowCount, 0, `rejected by the loader: ${JSON.stringify(rej.rows)}`);
    assert.ok(Date.now() - since < 10000, `only ${r.rows[0][0]} of ${sent.length} events loaded`);
    await new Promise((res) => setTimeout(res, 50));
  }
  const rej = await sql("SELECT count(*) FROM _rejects WHERE topic = 'events' AND decode(payload) LIKE '%acc-%'");
  assert.equal(rej.rows[0][0], 0);
  // the values arrive intact
  const deep = await sql("SELECT properties, context FROM events WHERE id = 'acc-deep-batch'");
  assert.deepEqual(deep.rows[0][0], shapes.deep);
  assert.deepEqual(deep.rows[0][1].d, shapes.deep.d);
  const uni = await sql("SELECT properties FROM events WHERE id = 'acc-unicode-track'");
  assert.deepEqual(uni.rows[0][0], shapes.unicode);
  const num = await sql("SELECT properties->>'big', properties->>'neg', (properties->>'max')::DOUBLE FROM events WHERE id = 'acc-numbers-batch'");
  assert.deepEqual(num.rows[0], ['9007199254740993', '-9223372036854775808', 1.7976931348623157e308]);
});

// SQL built at run time reached tandem's C aggregates as window functions and killed the
// server (SIGSEGV); a result larger than the byte cap is a clear 400, not a 5xx.
test('SQL API: SQL run from text is refused, the server survives; results are capped in bytes', async () => {
  const win = 'SELECT tandem_bitcount(range::UBIGINT) OVER () FROM range(5000)';
  for (const q of [
    `SELECT count(*) FROM query('${win}')`,
    `SELECT count(*) FROM json_execute_serialized_sql(json_serialize_sql('${win}'))`,
    "SELECT * FROM query_table('events')",
    "SELECT * FROM query('SELECT tandem_' || 'bitcount(range::UBIGINT) OVER () FROM range(5000)')",
  ]) {
    const r = await sqlRaw(q);
    assert.equal(r.status, 400, `${q}: ${r.text}`);
    assert.deepEqual(Object.keys(r.json).sort(), ['data', 'message', 'status']);
    assert.match(r.json.data.detail, /is not allowed: it runs SQL given as text/);
  }
  assert.equal((await sql('SELECT 42')).rows[0][0], 42);
  const big = await sqlRaw('SELECT repeat(\'x\', 40 * 1024 * 1024) AS s');
  assert.equal(big.status, 400, big.text.slice(0, 200));
  assert.equal(big.json.status, 400);
  assert.equal(big.json.message, 'The query result is too large.');
  assert.match(big.json.data.detail, /larger than 33554432 bytes/);
  assert.equal((await sql('SELECT 43')).rows[0][0], 43);
});

// DuckDB checks its interrupt only between steps: one long function call (levenshtein of two
// long constants, folded while preparing: quadratic time, linear memory) runs on past the
// statement timeout. Its request is still answered at the deadline, the other thread keeps
// serving, and SIGTERM does not wait for the call. Bounds are relative to the call's own
// duration, estimated from a call 10x shorter (so ~100x faster).
test('SQL API: one long engine call is answered at its timeout and does not hold shutdown', async () => {
  const d2 = tempDir();
  await createSuperuser(d2);
  const s2 = await start({ dir: d2, args: ['--sql-timeout', '3s'] });
  let exitedEarly = false;
  try {
    const p2 = client(s2.url);
    await p2.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
    const opts = { url: s2.url, auth: p2.authStore.token };
    const lev = (n) => `SELECT levenshtein(repeat('a', ${n}), repeat('b', ${n})) AS d`;
    let t0 = Date.now();
    const small = await sqlRaw(lev(15000), undefined, opts);
    assert.equal(small.status, 200, small.text);
    const callMs = (Date.now() - t0) * 100; // the long call below, ~50 s on an idle machine
    assert.ok(callMs > 8000, `the long call would take only ~${callMs} ms`);

    t0 = Date.now();
    const slow = sqlRaw(lev(150000), undefined, opts);
    await new Promise((r) => setTimeout(r, 300));
    const other = await sqlRaw('SELECT 42 AS x', undefined, opts);
    assert.equal(other.status, 200, other.text); // served by the other thread meanwhile
    assert.equal(other.json.rows[0][0], 42);
    const r1 = await slow;
    const took = Date.now() - t0;
    assert.equal(r1.status, 400, r1.text);
    assert.equal(r1.json.status, 400);
    assert.match(r1.json.message, /statement timeout/);
    assert.ok(took < callMs / 2, `answered after ${took} ms, the call takes ~${callMs} ms`);

    // the second thread gets stuck too: while both are, a new query is refused with 503
    const r2 = await sqlRaw(lev(150000), undefined, opts);
    assert.equal(r2.status, 400, r2.text);
    if (Date.now() - t0 < callMs / 2) {
      const busy = await sqlRaw('SELECT 1', undefined, opts);
      assert.equal(busy.status, 503, busy.text);
      assert.match(busy.json.message, /try again/);
    }

    // SIGTERM while the calls still run: the process exits 0 without waiting for them
    const t1 = Date.now();
    const { code } = await s2.stop();
    const stopMs = Date.now() - t1;
    exitedEarly = true;
    assert.equal(code, 0, s2.stderr());
    assert.ok(Date.now() - t0 < callMs, `exited after ${stopMs} ms, before the call ended`);
    assert.match(s2.stderr(), /leaving the warehouse open: a query is still running/);
  } finally {
    if (!exitedEarly) await s2.stop();
  }
});
