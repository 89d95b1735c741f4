// Realtime (SSE) through the real `pocketbase` SDK with the `eventsource` package as
// globalThis.EventSource: PB_CONNECT, `coll/*` and `coll/<id>` topics with expand/fields
// options, create/update/delete in order, listRule/viewRule per subscriber (a record that
// leaves a rule stops being sent), superusers, auth records deleted, the POST's error
// answers, reconnection across a server restart, and a client that never reads being
// disconnected without holding the others back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { rmSync } from 'node:fs';
import { EventSource } from 'eventsource';
import { start } from './lib/server.mjs';
import { client, startWithSuperuser, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';

globalThis.EventSource = EventSource;

let srv, su, dir;
let users, tags, x, y, locked;
let A, B, pbA, pbB;
const PW = 'passw0rd-realtime';
const f = (name, type, extra = {}) => ({ name, type, ...extra });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, fn, ms = 10000, every = 20) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

// Subscribes pb to coll/topic and records every event.
async function listen(pb, coll, topic, opts) {
  const got = [];
  const unsubscribe = await pb.collection(coll).subscribe(topic, (e) => got.push(e), opts);
  return { got, unsubscribe };
}

// A marker: a record in the public `tags` collection that every listener of tags/* sees.
// Changes are delivered in log order, so once the marker arrived, every change committed
// before it has been judged for that client: a missing event is then truly not sent.
async function marker(listener, name) {
  await su.collection('tags').create({ name });
  await waitFor(`marker ${name}`, () => listener.got.some((e) => e.record.name === name));
}

async function login(email) {
  const pb = client(srv.url);
  await pb.collection('users').authWithPassword(email, PW);
  return pb;
}

before(async () => {
  ({ srv, pb: su, dir } = await startWithSuperuser({ keepDir: true }));
  users = await su.collections.getOne('users');
  tags = await su.collections.create({
    name: 'tags', type: 'base', listRule: '', viewRule: '', fields: [f('name', 'text')],
  });
  const own = 'owner = @request.auth.id';
  x = await su.collections.create({
    name: 'x', type: 'base', listRule: own, viewRule: own,
    fields: [f('title', 'text'), f('n', 'number'), f('secret', 'text', { hidden: true }),
      f('owner', 'relation', { collectionId: users.id, maxSelect: 1 }),
      f('tag', 'relation', { collectionId: tags.id, maxSelect: 1 })],
  });
  y = await su.collections.create({
    name: 'y', type: 'base', listRule: '@request.auth.id != ""', viewRule: '@request.auth.id != ""',
    fields: [f('title', 'text')],
  });
  locked = await su.collections.create({ name: 'locked', type: 'base', fields: [f('title', 'text')] });
  A = await su.collection('users').create({ email: 'a@example.com', password: PW, passwordConfirm: PW });
  B = await su.collection('users').create({ email: 'b@example.com', password: PW, passwordConfirm: PW });
  pbA = await login('a@example.com');
  pbB = await login('b@example.com');
});

after(async () => {
  for (const pb of [su, pbA, pbB]) pb?.realtime.unsubscribe().catch(() => {});
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('PB_CONNECT carries the client id on the id line and in data', async () => {
  const es = new EventSource(`${srv.url}/api/realtime`);
  const ev = await new Promise((resolve, reject) => {
    es.addEventListener('PB_CONNECT', resolve);
    es.onerror = reject;
  });
  es.close();
  assert.match(ev.lastEventId, /^[A-Za-z0-9]{40}$/);
  assert.deepEqual(JSON.parse(ev.data), { clientId: ev.lastEventId });
});

test('coll/* and coll/<id> receive create, update, delete in order with expand and fields', async () => {
  const tag = await su.collection('tags').create({ name: 'red' });
  const all = await listen(su, 'x', '*', { expand: 'tag' });
  const created = [];
  for (let i = 0; i < 5; i++) created.push(await su.collection('x').create({ title: `t${i}`, n: i, owner: A.id, tag: tag.id, secret: 's' }));
  // changes reach the hub through the log: wait until it has seen the creates, so the
  // record subscription starts after them
  await waitFor('5 creates on x/*', () => all.got.length >= 5);
  const one = await listen(su, 'x', created[2].id, { fields: 'id,title' });
  await su.collection('x').update(created[2].id, { title: 'changed' });
  await su.collection('x').update(created[3].id, { title: 'other' });
  await su.collection('x').delete(created[2].id);
  await waitFor('8 events on x/*', () => all.got.length >= 8);
  assert.deepEqual(all.got.map((e) => `${e.action}:${e.record.id}`), [
    ...created.map((r) => `create:${r.id}`),
    `update:${created[2].id}`, `update:${created[3].id}`, `delete:${created[2].id}`]);
  assert.equal(all.got[0].record.title, 't0');
  assert.equal(all.got[0].record.collectionName, 'x');
  assert.equal(all.got[0].record.secret, 's', 'a superuser sees hidden fields');
  assert.equal(all.got[0].record.expand.tag.name, 'red', 'expand option honoured');
  assert.equal(all.got[5].record.title, 'changed');
  assert.equal(all.got[7].record.title, 'changed', 'a delete carries the deleted record');
  await waitFor('2 events on x/<id>', () => one.got.length >= 2);
  await sleep(100);
  assert.deepEqual(one.got.map((e) => e.action), ['update', 'delete'], 'only that record');
  assert.deepEqual(one.got[0].record, { id: created[2].id, title: 'changed' }, 'fields option honoured');
  await all.unsubscribe();
  await one.unsubscribe();
});

test('listRule per subscriber: A and B see only their own records; superuser sees all', async () => {
  const la = await listen(pbA, 'x', '*');
  const lb = await listen(pbB, 'x', '*');
  const ls = await listen(su, 'x', '*');
  const ma = await listen(pbA, 'tags', '*');
  const mb = await listen(pbB, 'tags', '*');
  const ra = await su.collection('x').create({ title: 'for A', owner: A.id, secret: 'hidden' });
  const rb = await su.collection('x').create({ title: 'for B', owner: B.id });
  await marker(ma, 'm1');
  await waitFor('B marker', () => mb.got.some((e) => e.record.name === 'm1'));
  assert.deepEqual(la.got.map((e) => e.record.id), [ra.id]);
  assert.equal(la.got[0].record.secret, undefined, 'hidden fields are not sent to users');
  assert.deepEqual(lb.got.map((e) => e.record.id), [rb.id]);
  await waitFor('superuser sees both', () => ls.got.length >= 2);
  assert.deepEqual(ls.got.map((e) => e.record.id), [ra.id, rb.id]);

  // the record leaves A's rule: A no longer gets it, B does from now on
  await su.collection('x').update(ra.id, { owner: B.id });
  await su.collection('x').update(ra.id, { title: 'still B' });
  await marker(ma, 'm2');
  await waitFor('B sees the moved record', () => lb.got.filter((e) => e.record.id === ra.id).length >= 2);
  assert.deepEqual(la.got.map((e) => `${e.action}:${e.record.id}`), [`create:${ra.id}`], 'nothing after it left the rule');
  for (const l of [la, lb, ls, ma, mb]) await l.unsubscribe();
});

test('viewRule for coll/<id>; a null rule lets only superusers through', async () => {
  const rb = await su.collection('x').create({ title: 'B only', owner: B.id });
  const va = await listen(pbA, 'x', rb.id);
  const vb = await listen(pbB, 'x', rb.id);
  const ma = await listen(pbA, 'tags', '*');
  const lockedA = await listen(pbA, 'locked', '*');
  const lockedSu = await listen(su, 'locked', '*');
  await su.collection('x').update(rb.id, { title: 'B only 2' });
  const lr = await su.collection('locked').create({ title: 'secret' });
  await marker(ma, 'm3');
  await waitFor('B view event', () => vb.got.length >= 1);
  await waitFor('superuser locked event', () => lockedSu.got.length >= 1);
  assert.equal(va.got.length, 0, 'A may not view B\'s record');
  assert.equal(lockedA.got.length, 0, 'null rule: users see nothing');
  assert.equal(lockedSu.got[0].record.id, lr.id);
  for (const l of [va, vb, ma, lockedA, lockedSu]) await l.unsubscribe();
});

test('a deleted auth record takes its clients\' auth away', async () => {
  const C = await su.collection('users').create({ email: 'c@example.com', password: PW, passwordConfirm: PW });
  const pbC = await login('c@example.com');
  const ly = await listen(pbC, 'y', '*');
  const mc = await listen(pbC, 'tags', '*');
  await su.collection('y').create({ title: 'seen' });
  await waitFor('C sees y while signed in', () => ly.got.length >= 1);
  await su.collection('users').delete(C.id);
  await su.collection('y').create({ title: 'not seen' });
  await marker(mc, 'm4');
  assert.deepEqual(ly.got.map((e) => e.record.title), ['seen']);
  pbC.realtime.unsubscribe().catch(() => {});
});

test('POST /api/realtime answers 204, 400, 404 and 403 like PocketBase', async () => {
  const es = new EventSource(`${srv.url}/api/realtime`);
  const id = await new Promise((resolve) => es.addEventListener('PB_CONNECT', (e) => resolve(e.lastEventId)));
  const post = async (body, token) => {
    const headers = { 'Content-Type': 'application/json' };
    if (token) headers.Authorization = token;
    const r = await fetch(`${srv.url}/api/realtime`, { method: 'POST', headers, body: JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };
  assert.equal((await post({ clientId: id, subscriptions: ['x/*'] })).status, 204);
  let r = await post({ subscriptions: [] });
  assert.equal(r.status, 400);
  assert.equal(r.body.data.clientId.code, 'validation_required');
  r = await post({ clientId: id, subscriptions: Array.from({ length: 1001 }, (_, i) => `x/${i}`) });
  assert.equal(r.status, 400);
  assert.equal(r.body.data.subscriptions.code, 'validation_length_too_long');
  r = await post({ clientId: id, subscriptions: ['x/*', 'x/' + 'a'.repeat(2500)] });
  assert.equal(r.status, 400);
  assert.equal(r.body.data.subscriptions['1'].code, 'validation_length_out_of_range');
  r = await post({ clientId: id, subscriptions: ['x/*\nevent:evil'] });
  assert.equal(r.status, 400, 'a topic cannot break the SSE framing');
  r = await post({ clientId: 'no-such-client', subscriptions: [] });
  assert.equal(r.status, 404);
  assert.equal(r.body.message, 'Missing or invalid client id.');
  assert.equal((await post({ clientId: id, subscriptions: [] }, pbA.authStore.token)).status, 204, 'guest -> auth');
  r = await post({ clientId: id, subscriptions: [] }, pbB.authStore.token);
  assert.equal(r.status, 403, 'another auth than before');
  assert.equal((await post({ clientId: id, subscriptions: [] })).status, 403, 'auth -> guest');
  es.close();
});

test('the SDK reconnects after a server restart and receives later changes', async () => {
  const { srv: s1, pb, dir: d } = await startWithSuperuser({ keepDir: true });
  await pb.collections.create({ name: 'n', type: 'base', listRule: '', fields: [f('title', 'text')] });
  const got = [];
  await pb.collection('n').subscribe('*', (e) => got.push(e));
  await pb.collection('n').create({ title: 'before' });
  await waitFor('event before restart', () => got.length >= 1);
  const port = s1.port;
  await s1.stop();
  const s2 = await start({ dir: d, args: ['--http', `127.0.0.1:${port}`] });
  try {
    assert.equal(s2.port, port);
    const other = client(s2.url);
    await other.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
    // the SDK resubscribes after its reconnect; keep writing until one arrives
    await waitFor('event after restart', async () => {
      await other.collection('n').create({ title: 'after' });
      await sleep(200);
      return got.some((e) => e.record.title === 'after');
    }, 20000);
    assert.equal(got[0].record.title, 'before');
  } finally {
    await pb.realtime.unsubscribe().catch(() => {});
    await s2.stop();
    rmSync(d, { recursive: true, force: true });
  }
});

test('a client that never reads is disconnected; the others keep receiving', async () => {
  const { srv: s, pb, dir: d } = await startWithSuperuser({ keepDir: true, args: ['--realtime-queue', '1MiB'] });
  try {
    await pb.collections.create({ name: 'big', type: 'base', listRule: '', fields: [f('blob', 'json')] });
    // the stalled client: a raw socket that reads PB_CONNECT, then stops reading
    const sock = net.connect(s.port, '127.0.0.1');
    sock.write(`GET /api/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`);
    let head = '';
    const id = await new Promise((resolve) => sock.on('data', (d2) => {
      head += d2;
      const m = /id:([A-Za-z0-9]{40})/.exec(head);
      if (m) resolve(m[1]);
    }));
    sock.pause();
    let closed = false;
    sock.on('close', () => { closed = true; });
    sock.on('error', () => {});
    const r = await fetch(`${s.url}/api/realtime`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ clientId: id, subscriptions: ['big/*'] }),
    });
    assert.equal(r.status, 204);
    const got = [];
    await pb.collection('big').subscribe('*', (e) => got.push(e));
    const droppedNow = async () => Number(/^tandem_realtime_dropped_clients_total (\d+)/m
      .exec(await (await fetch(`${s.url}/metrics`)).text())?.[1]);
    // 10 MB in all: more than the socket buffers (up to 4 MiB here) and the 1 MiB queue hold
    const blob = 'z'.repeat(64 * 1024);
    const N = 160;
    // the reading client gets each record before the next is written: it never falls behind,
    // while the stalled one accumulates everything
    for (let i = 0; i < N; i++) {
      await pb.collection('big').create({ blob: { i, blob } });
      await waitFor(`record ${i}`, () => got.length > i, 10000, 2)
        .catch(async (e) => { throw new Error(`${e.message}: dropped ${await droppedNow()}`); });
    }
    assert.deepEqual(got.map((e) => e.record.blob.i), Array.from({ length: N }, (_, i) => i));
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    const dropped = Number(/^tandem_realtime_dropped_clients_total (\d+)/m.exec(metrics)?.[1]);
    assert.equal(dropped, 1, 'the stalled client, and only it, was dropped');
    assert.match(metrics, /^tandem_realtime_deliveries_total \d+/m);
    sock.resume(); // drain what the kernel holds: then the close shows
    await waitFor('the stalled socket is closed', () => closed, 15000);
    sock.destroy();
  } finally {
    await pb.realtime.unsubscribe().catch(() => {});
    await s.stop();
    rmSync(d, { recursive: true, force: true });
  }
});
