// @request.body in rules is exactly what the store writes: body modifiers ("f+", "+f", "f-",
// "f:autogenerate") are resolved by the same code, in the same order, as the write, for
// every field type, every modifier and every key order, in JSON, form and multipart bodies.
//
// Two properties, per field type, on a collection whose rules compare the body with the
// record (`@request.body.f:isset = false || @request.body.f = f`):
//   - create: `f` is the record as written, so the rule holds iff the rule's view of the body
//     equals what was stored: every create is either written or refused for f's own value,
//     never by the rule;
//   - update: `f` is the record before the write, so the rule means "f may not change": after
//     any update, f is unchanged.
// And the two account takeovers the rule views used to allow, over every body encoding.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { start } from './lib/server.mjs';
import { client, startWithSuperuser } from './lib/pb.mjs';

let srv, su;

before(async () => {
  ({ srv, pb: su } = await startWithSuperuser());
});
after(async () => {
  await srv.stop();
});

const SAME = '@request.body.f:isset = false || @request.body.f = f';
// an empty list is an empty value to the filter language ([] = f is never true): lengths too
const SAME_LIST = '@request.body.f:isset = false || (@request.body.f:length = f:length && (f:length = 0 || @request.body.f = f))';

// A request with a body of the given encoding: 'json', 'form' (urlencoded) or 'multipart'.
// Arrays in form bodies repeat the key, as browsers send them.
async function send(method, path, body, enc = 'json', token) {
  const headers = {};
  if (token) headers.Authorization = token;
  let payload;
  if (enc === 'json') {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  } else {
    const form = enc === 'form' ? new URLSearchParams() : new FormData();
    for (const [k, v] of Object.entries(body))
      for (const x of Array.isArray(v) ? v : [v]) form.append(k, String(x));
    payload = form;
  }
  const r = await fetch(`${srv.url}${path}`, { method, headers, body: payload });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

// Per field type: the field, valid values a and b (c for three-valued lists), and the bodies
// to try, with every modifier the type has and both key orders.
function bodies(a, b) {
  return [
    { f: a },
    { 'f+': b },
    { '+f': b },
    { 'f-': a },
    { f: a, 'f+': b },
    { 'f+': b, f: a },
    { '+f': b, f: a },
    { f: a, '+f': b },
    { f: [a, b].flat(), 'f-': a },
    { 'f-': a, f: [a, b].flat() },
    { 'f+': b, 'f-': a },
    { 'f-': a, 'f+': b },
    { '+f': a, 'f+': b, 'f-': a },
  ];
}

async function cases() {
  const target = await su.collections.create({ name: 'body_target', fields: [{ name: 't', type: 'text' }] });
  const t1 = (await su.collection('body_target').create({ t: 'one' })).id;
  const t2 = (await su.collection('body_target').create({ t: 'two' })).id;
  return [
    { type: 'text', field: { type: 'text' }, a: 'alpha', b: 'beta' },
    { type: 'text_autogen', field: { type: 'text', autogeneratePattern: '[a-z]{6}' }, a: 'x-', b: 'y-', extra: [{ 'f:autogenerate': 'p-' }, { f: 'plain', 'f:autogenerate': 'p-' }, { 'f:autogenerate': 'p-', f: 'plain' }] },
    { type: 'number', field: { type: 'number' }, a: 3, b: 5, extra: [{ 'f+': '7' }, { 'f-': 1e300 }, { f: 2, 'f-': 2, 'f+': 9 }] },
    { type: 'bool', field: { type: 'bool' }, a: true, b: false },
    { type: 'email', field: { type: 'email' }, a: 'a@example.com', b: 'b@example.com' },
    { type: 'url', field: { type: 'url' }, a: 'https://a.example.com', b: 'https://b.example.com' },
    { type: 'date', field: { type: 'date' }, a: '2026-01-02 03:04:05.000Z', b: '2026-02-03 04:05:06.000Z' },
    { type: 'select1', field: { type: 'select', values: ['user', 'admin', 'x'], maxSelect: 1 }, a: 'user', b: 'admin' },
    { type: 'selectN', field: { type: 'select', values: ['user', 'admin', 'x'], maxSelect: 3 }, a: 'user', b: ['admin', 'x'], list: true },
    { type: 'relation1', field: { type: 'relation', collectionId: target.id, maxSelect: 1 }, a: t1, b: t2 },
    { type: 'relationN', field: { type: 'relation', collectionId: target.id, maxSelect: 5 }, a: t1, b: [t2], list: true },
    { type: 'json', field: { type: 'json' }, a: { k: 1 }, b: [1, 2] },
    { type: 'autodate', field: { type: 'autodate', onCreate: true, onUpdate: true }, a: '2020-01-01 00:00:00.000Z', b: '2021-01-01 00:00:00.000Z' },
  ];
}

test('every field type, modifier and key order: the rule sees what the store writes', async () => {
  for (const cs of await cases()) {
    const name = `body_${cs.type}`;
    await su.collections.create({
      name,
      fields: [{ name: 'f', ...cs.field }, { name: 'g', type: 'text' }],
      listRule: '', viewRule: '', createRule: cs.list ? SAME_LIST : SAME, updateRule: cs.list ? SAME_LIST : SAME, deleteRule: null,
    });
    const all = [...bodies(cs.a, cs.b), ...(cs.extra || [])];
    for (const enc of ['json', 'form', 'multipart']) {
      if (enc !== 'json' && (cs.type === 'json' || cs.type === 'bool')) continue; // typed values only in JSON
      for (const body of all) {
        const what = `${cs.type} ${enc} ${JSON.stringify(body)}`;
        // create: written, or refused for the field's own value (data.f), never by the rule
        const c = await send('POST', `/api/collections/${name}/records`, body, enc);
        if (c.status !== 200) {
          assert.equal(c.status, 400, `${what}: ${JSON.stringify(c.body)}`);
          assert.ok(c.body.data?.f, `${what}: refused by the rule, not by the field: ${JSON.stringify(c.body)}`);
        }
        // update: f may not change, whatever the body says
        const seed = await su.collection(name).create({ f: cs.a, g: 'seed' });
        const u = await send('PATCH', `/api/collections/${name}/records/${seed.id}`, body, enc);
        assert.ok([200, 400, 404].includes(u.status), `${what}: ${u.status} ${JSON.stringify(u.body)}`);
        const now = await su.collection(name).getOne(seed.id);
        if (cs.type !== 'autodate') assert.deepEqual(now.f, seed.f, `${what}: the update changed f to ${JSON.stringify(now.f)}`);
      }
    }
    // controls: the rule does let through what does not change f, so refusals above are real
    const seed = await su.collection(name).create({ f: cs.a, g: 'seed' });
    const ok = await send('PATCH', `/api/collections/${name}/records/${seed.id}`, { g: 'other' });
    assert.equal(ok.status, 200, `${cs.type}: ${JSON.stringify(ok.body)}`);
  }
});

// users-like collection: role pinned by the rules, as in the examples
async function roleUsers() {
  const users = await su.collections.getOne('users');
  const fields = users.fields.filter((x) => x.name !== 'role');
  fields.push({ name: 'role', type: 'select', values: ['user', 'admin'], maxSelect: 1 });
  await su.collections.update('users', {
    fields,
    createRule: "@request.body.role:isset = false || @request.body.role = 'user'",
    updateRule: 'id = @request.auth.id && (@request.body.role:isset = false || @request.body.role = role)',
  });
}

test('a user cannot make themselves admin with "role+", in any body encoding', async () => {
  await roleUsers();
  let i = 0;
  for (const enc of ['json', 'form', 'multipart']) {
    for (const body of [{ 'role+': 'admin' }, { '+role': 'admin' }, { 'role+': 'admin', role: 'user' }, { role: 'user', '+role': 'admin' }, { 'role-': 'user' }]) {
      const email = `u${i++}@example.com`;
      const u = await su.collection('users').create({ email, password: 'passw0rd-123', passwordConfirm: 'passw0rd-123', role: 'user' });
      const pb = client(srv.url);
      await pb.collection('users').authWithPassword(email, 'passw0rd-123');
      const r = await send('PATCH', `/api/collections/users/records/${u.id}`, body, enc, pb.authStore.token);
      assert.ok([200, 400, 404].includes(r.status), `${enc} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.equal((await su.collection('users').getOne(u.id)).role, 'user', `${enc} ${JSON.stringify(body)}`);
      // the rule still lets the user edit the rest of the record
      const ok = await send('PATCH', `/api/collections/users/records/${u.id}`, { name: 'me', role: 'user' }, enc, pb.authStore.token);
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
    }
  }
});

test('a guest cannot sign up as admin with {"role":"user","role+":"admin"}, in any body encoding', async () => {
  await roleUsers();
  let i = 0;
  for (const enc of ['json', 'form', 'multipart']) {
    for (const mods of [{ role: 'user', 'role+': 'admin' }, { 'role+': 'admin', role: 'user' }, { '+role': 'admin', role: 'user' }, { 'role+': 'admin' }]) {
      const email = `g${i++}@example.com`;
      const body = { email, password: 'passw0rd-123', passwordConfirm: 'passw0rd-123', ...mods };
      const r = await send('POST', '/api/collections/users/records', body, enc);
      if (r.status === 200) assert.equal(r.body.role, 'user', `${enc} ${JSON.stringify(mods)}`);
      const list = await su.collection('users').getFullList({ filter: su.filter('email = {:e}', { e: email }) });
      for (const u of list) assert.equal(u.role, 'user', `${enc} ${JSON.stringify(mods)} signed up as ${u.role}`);
    }
  }
  // control: a plain sign-up as a user works
  const r = await send('POST', '/api/collections/users/records', { email: 'plain@example.com', password: 'passw0rd-123', passwordConfirm: 'passw0rd-123', role: 'user' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
});
