// Collections and records through the real `pocketbase` SDK, signed in as a superuser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { start } from './lib/server.mjs';
import { client, expectStatus, startWithSuperuser, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';

const DATE_RE = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ID_RE = /^[a-z0-9]{15}$/;

let srv, pb, dir, users, posts;

before(async () => {
  ({ srv, pb, dir } = await startWithSuperuser({ keepDir: true }));
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

const f = (name, type, extra = {}) => ({ name, type, ...extra });

test('superuser sign-in gives a token and the _superusers record', async () => {
  assert.ok(pb.authStore.isValid);
  assert.ok(pb.authStore.isSuperuser);
  assert.equal(pb.authStore.record.email, SU_EMAIL);
  assert.equal(pb.authStore.record.collectionName, '_superusers');
  assert.equal(pb.authStore.record.password, undefined);
  assert.equal(pb.authStore.record.tokenKey, undefined);
  // wrong password: 400 Failed to authenticate.
  const e = await expectStatus(client(srv.url).collection('_superusers').authWithPassword(SU_EMAIL, 'nope-nope-nope'), 400);
  assert.equal(e.response.message, 'Failed to authenticate.');
  // bearer and raw Authorization both work
  for (const auth of [pb.authStore.token, `Bearer ${pb.authStore.token}`]) {
    const r = await fetch(`${srv.url}/api/collections`, { headers: { Authorization: auth } });
    assert.equal(r.status, 200);
  }
});

test('guests are refused while rules are null', async () => {
  const guest = client(srv.url);
  const e = await guest.collections.getFullList().then(() => null, (err) => err);
  assert.ok(e && [401, 403].includes(e.status), String(e?.status));
  const posts0 = await guest.collection('_superusers').getList().then(() => null, (err) => err);
  assert.equal(posts0?.status, 403);
  const forged = await fetch(`${srv.url}/api/collections`, { headers: { Authorization: 'eyJhbGciOiJub25lIn0.eyJpZCI6IngifQ.' } });
  assert.ok([401, 403].includes(forged.status));
});

test('collections: create with every field type', async () => {
  users = await pb.collections.getOne('users');
  assert.equal(users.type, 'auth');
  assert.equal(users.id, '_pb_users_auth_');

  posts = await pb.collections.create({
    name: 'posts',
    type: 'base',
    fields: [
      f('title', 'text', { required: true, min: 3, max: 100 }),
      f('views', 'number', { min: 0, max: 1000000, onlyInt: true }),
      f('score', 'number'),
      f('published', 'bool'),
      f('contact', 'email'),
      f('site', 'url'),
      f('due', 'date'),
      f('status', 'select', { values: ['draft', 'live', 'archived'], maxSelect: 1 }),
      f('tags', 'select', { values: ['a', 'b', 'c', 'd'], maxSelect: 3 }),
      f('meta', 'json'),
      f('author', 'relation', { collectionId: users.id, maxSelect: 1 }),
      f('created', 'autodate', { onCreate: true, onUpdate: false }),
      f('updated', 'autodate', { onCreate: true, onUpdate: true }),
    ],
    indexes: ['CREATE INDEX `idx_posts_views` ON `posts` (`views`)'],
  });
  assert.match(posts.id, /^pbc_\d+$|^[a-z0-9_]+$/);
  assert.equal(posts.name, 'posts');
  assert.equal(posts.type, 'base');
  assert.equal(posts.system, false);
  for (const r of ['listRule', 'viewRule', 'createRule', 'updateRule', 'deleteRule']) assert.equal(posts[r], null);
  const names = posts.fields.map((x) => x.name);
  assert.deepEqual(names.slice(0, 1), ['id']);
  for (const n of ['title', 'views', 'tags', 'author', 'created']) assert.ok(names.includes(n), n);
  const title = posts.fields.find((x) => x.name === 'title');
  assert.equal(title.type, 'text');
  assert.equal(title.required, true);
  assert.equal(title.max, 100);
  assert.ok(title.id);
  assert.equal(posts.indexes.length, 1);

  const again = await pb.collections.getOne(posts.id);
  assert.equal(again.name, 'posts');
  const list = await pb.collections.getFullList();
  assert.ok(list.some((c) => c.name === 'posts'));
  assert.ok(list.some((c) => c.name === '_superusers' && c.system === true));

  const comments = await pb.collections.create({
    name: 'comments',
    type: 'base',
    fields: [f('body', 'text'), f('post', 'relation', { collectionId: posts.id, maxSelect: 1, cascadeDelete: true })],
  });
  assert.equal(comments.name, 'comments');
});

test('collections: invalid definitions are 400 with the field named', async () => {
  for (const name of ['bad name', '1abc', 'a-b', '', 'x'.repeat(300), 'posts']) {
    const e = await expectStatus(pb.collections.create({ name, type: 'base', fields: [] }), 400);
    assert.ok(e.response.data.name, `${name}: ${JSON.stringify(e.response)}`);
  }
  const e = await expectStatus(pb.collections.create({ name: 'weird', type: 'base', fields: [f('x y', 'text')] }), 400);
  assert.ok(e.response.data.fields, JSON.stringify(e.response));
  await expectStatus(pb.collections.create({ name: 'weird2', type: 'nope', fields: [] }), 400);
  await expectStatus(pb.collections.create({ name: 'weird3', type: 'base', fields: [f('r', 'relation', { collectionId: 'missing' })] }), 400);
});

let userA, userB;
test('auth records: create users with password', async () => {
  userA = await pb.collection('users').create({ email: 'a@example.com', password: 'passw0rd-a', passwordConfirm: 'passw0rd-a', name: 'Alice' });
  userB = await pb.collection('users').create({ email: 'b@example.com', password: 'passw0rd-b', passwordConfirm: 'passw0rd-b', name: 'Bob' });
  assert.match(userA.id, ID_RE);
  assert.equal(userA.password, undefined);
  assert.equal(userA.tokenKey, undefined);
  assert.equal(userA.collectionName, 'users');
  const e = await expectStatus(pb.collection('users').create({ email: 'c@example.com', password: 'x1234567', passwordConfirm: 'different' }), 400);
  assert.ok(e.response.data.passwordConfirm);
  const dup = await expectStatus(pb.collection('users').create({ email: 'a@example.com', password: 'passw0rd-a', passwordConfirm: 'passw0rd-a' }), 400);
  assert.equal(dup.response.data.email.code, 'validation_not_unique');
});

let first;
test('records: create with every field type returns typed values', async () => {
  first = await pb.collection('posts').create({
    title: 'Hello world', views: 42, score: 2.5, published: true, contact: 'me@example.com',
    site: 'https://example.com/x', due: '2030-01-02 03:04:05.678Z', status: 'live', tags: ['a', 'c'],
    meta: { k: [1, 'two', null] }, author: userA.id, unknownKey: 'ignored',
  });
  assert.match(first.id, ID_RE);
  assert.equal(first.collectionId, posts.id);
  assert.equal(first.collectionName, 'posts');
  assert.equal(first.title, 'Hello world');
  assert.equal(first.views, 42);
  assert.equal(first.score, 2.5);
  assert.equal(first.published, true);
  assert.equal(first.contact, 'me@example.com');
  assert.equal(first.site, 'https://example.com/x');
  assert.equal(first.due, '2030-01-02 03:04:05.678Z');
  assert.equal(first.status, 'live');
  assert.deepEqual(first.tags, ['a', 'c']);
  assert.deepEqual(first.meta, { k: [1, 'two', null] });
  assert.equal(first.author, userA.id);
  assert.match(first.created, DATE_RE);
  assert.match(first.updated, DATE_RE);
  assert.equal(first.unknownKey, undefined);

  const empty = await pb.collection('posts').create({ title: 'Empty one' });
  assert.equal(empty.views, 0);
  assert.equal(empty.published, false);
  assert.equal(empty.contact, '');
  assert.equal(empty.due, '');
  assert.equal(empty.status, '');
  assert.deepEqual(empty.tags, []);
  assert.equal(empty.meta, null);
  assert.equal(empty.author, '');

  const own = await pb.collection('posts').create({ id: 'myownid12345678', title: 'Chosen id' });
  assert.equal(own.id, 'myownid12345678');
  await expectStatus(pb.collection('posts').create({ id: 'myownid12345678', title: 'Again' }), 400);
  await expectStatus(pb.collection('posts').create({ id: 'BAD ID!', title: 'Bad id' }), 400);

  const got = await pb.collection('posts').getOne(first.id);
  assert.deepEqual(got, first);
});

test('records: validation errors name the field and code', async () => {
  const cases = [
    [{}, 'title', 'validation_required'],
    [{ title: 'ab' }, 'title', 'validation_min_text_constraint'],
    [{ title: 'x'.repeat(101) }, 'title', 'validation_max_text_constraint'],
    [{ title: 'okay', views: -1 }, 'views', 'validation_min_number_constraint'],
    [{ title: 'okay', views: 2000000 }, 'views', 'validation_max_number_constraint'],
    [{ title: 'okay', views: 1.5 }, 'views', 'validation_only_int_constraint'],
    [{ title: 'okay', contact: 'not-an-email' }, 'contact', 'validation_invalid_email'],
    [{ title: 'okay', site: 'not a url' }, 'site', 'validation_invalid_url'],
    [{ title: 'okay', status: 'nope' }, 'status', 'validation_invalid_value'],
    [{ title: 'okay', tags: ['a', 'b', 'c', 'd'] }, 'tags', 'validation_too_many_values'],
    [{ title: 'okay', tags: ['zzz'] }, 'tags', 'validation_invalid_value'],
    [{ title: 'okay', author: 'doesnotexist123' }, 'author', 'validation_missing_rel_records'],
    [{ title: 'okay', due: 'yesterday-ish' }, 'due', null],
  ];
  for (const [body, field, code] of cases) {
    const e = await expectStatus(pb.collection('posts').create(body), 400);
    assert.equal(e.response.status, 400);
    assert.equal(e.response.message, 'Failed to create record.');
    assert.ok(e.response.data[field], `${JSON.stringify(body)} -> ${JSON.stringify(e.response)}`);
    if (code) assert.equal(e.response.data[field].code, code, JSON.stringify(e.response));
    assert.equal(typeof e.response.data[field].message, 'string');
  }
});

test('records: update with modifiers, and delete', async () => {
  const r = await pb.collection('posts').create({ title: 'Modify me', views: 10, tags: ['a'] });
  const u1 = await pb.collection('posts').update(r.id, { 'views+': 5, 'tags+': 'b' });
  assert.equal(u1.views, 15);
  assert.deepEqual(u1.tags, ['a', 'b']);
  const u2 = await pb.collection('posts').update(r.id, { 'views-': 3, 'tags-': ['a'], '+tags': 'c' });
  assert.equal(u2.views, 12);
  assert.deepEqual(u2.tags, ['c', 'b']);
  assert.ok(u2.updated >= r.updated);
  assert.equal(u2.created, r.created);
  const u3 = await pb.collection('posts').update(r.id, { title: 'Renamed', published: true, meta: [1, 2] });
  assert.equal(u3.title, 'Renamed');
  assert.equal(u3.published, true);
  assert.deepEqual(u3.meta, [1, 2]);
  const e = await expectStatus(pb.collection('posts').update(r.id, { title: '' }), 400);
  assert.equal(e.response.message, 'Failed to update record.');
  await expectStatus(pb.collection('posts').update(r.id, { id: 'otherid12345678' }), 400);

  assert.equal(await pb.collection('posts').delete(r.id), true);
  const nf = await expectStatus(pb.collection('posts').getOne(r.id), 404);
  assert.deepEqual(nf.response, { data: {}, message: "The requested resource wasn't found.", status: 404 });
  await expectStatus(pb.collection('posts').delete(r.id), 404);
  await expectStatus(pb.collection('posts').update(r.id, { title: 'ghost' }), 404);
  await expectStatus(pb.collection('nosuchcollection').getList(), 404);
});

test('records: cascade delete follows relations', async () => {
  const p = await pb.collection('posts').create({ title: 'Has comments' });
  const c1 = await pb.collection('comments').create({ body: 'one', post: p.id });
  await pb.collection('comments').create({ body: 'two', post: p.id });
  await pb.collection('posts').delete(p.id);
  await expectStatus(pb.collection('comments').getOne(c1.id), 404);
  const left = await pb.collection('comments').getList(1, 10, { filter: `post = "${p.id}"` });
  assert.equal(left.totalItems, 0);
});

test('lists: paging across more than 1000 records', async () => {
  await pb.collections.create({ name: 'bulk', type: 'base', fields: [f('n', 'number'), f('label', 'text')] });
  const total = 1234;
  for (let i = 0; i < total; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, total - i) }, (_, k) => pb.collection('bulk').create({ n: i + k, label: `L${(i + k) % 7}` })));
  }
  const full = await pb.collection('bulk').getFullList({ sort: 'n' });
  assert.equal(full.length, total);
  assert.deepEqual(full.slice(0, 3).map((x) => x.n), [0, 1, 2]);
  assert.equal(new Set(full.map((x) => x.id)).size, total);

  const page = await pb.collection('bulk').getList(2, 100, { sort: '-n' });
  assert.equal(page.page, 2);
  assert.equal(page.perPage, 100);
  assert.equal(page.totalItems, total);
  assert.equal(page.totalPages, 13);
  assert.equal(page.items[0].n, total - 101);

  const capped = await pb.collection('bulk').getList(1, 5000);
  assert.equal(capped.perPage, 1000);
  assert.equal(capped.items.length, 1000);
  const skipped = await pb.collection('bulk').getList(1, 10, { skipTotal: true });
  assert.equal(skipped.totalItems, -1);
  assert.equal(skipped.totalPages, -1);
  const defaults = await fetch(`${srv.url}/api/collections/bulk/records`, { headers: { Authorization: pb.authStore.token } }).then((r) => r.json());
  assert.equal(defaults.perPage, 30);
  assert.equal(defaults.page, 1);
  const none = await pb.collection('bulk').getList(1, 10, { filter: 'n < 0' });
  assert.deepEqual(none.items, []);
  assert.equal(none.totalItems, 0);
  const bad = await fetch(`${srv.url}/api/collections/bulk/records?page=abc`, { headers: { Authorization: pb.authStore.token } });
  assert.equal(bad.status, 400);
});

test('filters: every operator', async () => {
  await pb.collections.create({
    name: 'items',
    type: 'base',
    fields: [f('name', 'text'), f('qty', 'number'), f('ok', 'bool'), f('labels', 'select', { values: ['x', 'y', 'z'], maxSelect: 3 }),
      f('owner', 'relation', { collectionId: users.id, maxSelect: 1 }), f('when', 'date'), f('doc', 'json')],
  });
  const rows = [
    { name: 'Apple', qty: 5, ok: true, labels: ['x', 'y'], owner: userA.id, when: '2020-01-01 00:00:00.000Z', doc: { color: 'red' } },
    { name: 'banana', qty: 10, ok: false, labels: ['y'], owner: userB.id, when: '2021-06-15 12:00:00.000Z', doc: { color: 'yellow' } },
    { name: 'Cherry 100%', qty: 0, ok: true, labels: [], owner: '', when: '', doc: null },
    { name: 'date_fruit', qty: 7.5, ok: false, labels: ['x', 'y', 'z'], owner: userA.id, when: '2099-01-01 00:00:00.000Z', doc: { color: 'brown' } },
  ];
  for (const r of rows) await pb.collection('items').create(r);
  const names = async (filter, sort = 'name') => (await pb.collection('items').getFullList({ filter, sort })).map((r) => r.name);

  assert.deepEqual(await names('qty = 5'), ['Apple']);
  assert.deepEqual(await names('qty != 5'), ['Cherry 100%', 'banana', 'date_fruit']);
  assert.deepEqual(await names('qty > 5'), ['banana', 'date_fruit']);
  assert.deepEqual(await names('qty >= 7.5'), ['banana', 'date_fruit']);
  assert.deepEqual(await names('qty < 5'), ['Cherry 100%']);
  assert.deepEqual(await names('qty <= 5'), ['Apple', 'Cherry 100%']);
  assert.deepEqual(await names('name ~ "an"'), ['banana']);
  assert.deepEqual(await names('name ~ "AN"'), ['banana']); // LIKE is case-insensitive for ASCII
  assert.deepEqual(await names('name !~ "a"'), ['Cherry 100%']);
  assert.deepEqual(await names('name ~ "100%"'), []); // a literal with % is used as is: starts with "100"
  assert.deepEqual(await names('name ~ "ch%"'), ['Cherry 100%']);
  assert.deepEqual(await names('name ~ "_"'), ['date_fruit']); // _ is escaped when auto-wrapped
  assert.deepEqual(await names('ok = true'), ['Apple', 'Cherry 100%']);
  assert.deepEqual(await names('ok = false && qty > 8'), ['banana']);
  assert.deepEqual(await names('qty = 0 || qty = 10'), ['Cherry 100%', 'banana']);
  assert.deepEqual(await names('(qty = 0 || qty = 10) && ok = true'), ['Cherry 100%']);
  assert.deepEqual(await names('qty = 0 || qty = 10 && ok = true'), ['Cherry 100%']);
  assert.deepEqual(await names('owner = ""'), ['Cherry 100%']);
  assert.deepEqual(await names('owner != ""'), ['Apple', 'banana', 'date_fruit']);
  assert.deepEqual(await names('when = null'), ['Cherry 100%']);
  assert.deepEqual(await names('when > "2021-01-01 00:00:00.000Z"'), ['banana', 'date_fruit']);
  assert.deepEqual(await names('when > @now'), ['date_fruit']);
  assert.deepEqual(await names('when < @todayStart && when != ""'), ['Apple', 'banana']);
  assert.deepEqual(await names('owner.name = "Alice"'), ['Apple', 'date_fruit']);
  assert.deepEqual(await names('owner.email ~ "b@"'), ['banana']);
  assert.deepEqual(await names('name:lower = "apple"'), ['Apple']);
  assert.deepEqual(await names('labels:length = 2'), ['Apple']);
  assert.deepEqual(await names('labels:length >= 1'), ['Apple', 'banana', 'date_fruit']);
  // a bare multi-value field is its JSON text; :each compares item by item (as PocketBase)
  assert.deepEqual(await names('labels:each ?= "z"'), ['date_fruit']);
  // any item other than x; an empty array joins as one NULL item, and NULL IS NOT 'x' (as PocketBase)
  assert.deepEqual(await names('labels:each ?!= "x"'), ['Apple', 'Cherry 100%', 'banana', 'date_fruit']);
  assert.deepEqual(await names('labels:each ?= "x"'), ['Apple', 'date_fruit']);
  assert.deepEqual(await names('labels:each = "y"'), ['banana']);
  assert.deepEqual(await names('labels ?~ "z"'), ['date_fruit']);
  assert.deepEqual(await names('labels:each !~ "x"'), ['banana']);
  assert.deepEqual(await names('doc.color = "red"'), ['Apple']);
  assert.deepEqual(await names("name = 'banana' // a comment"), ['banana']);
  assert.deepEqual(await names('qty ?> 6 && qty ?< 9 || qty ?>= 10 && qty ?<= 10'), ['banana', 'date_fruit']);
  // back-relation
  assert.deepEqual((await pb.collection('users').getFullList({ filter: 'items_via_owner.qty ?> 6', sort: 'name' })).map((u) => u.name), ['Alice', 'Bob']);
  assert.deepEqual((await pb.collection('users').getFullList({ filter: 'items_via_owner.qty > 6', sort: 'name' })).map((u) => u.name), ['Bob']);
});

test('filters: malformed expressions are 400 with a position', async () => {
  for (const filter of ['qty =', 'qty = 5 &&', 'nope = 1', '(qty = 1', 'qty == 1', '"unterminated', 'qty = 1 ||| qty = 2', 'qty', 'qty:bogus = 1', '@collection.nothere.x = 1']) {
    const e = await expectStatus(pb.collection('items').getList(1, 10, { filter }), 400);
    assert.equal(typeof e.response.message, 'string');
    assert.ok(e.response.message.length > 0, filter);
  }
  const long = Array.from({ length: 201 }, (_, i) => `qty = ${i}`).join(' || ');
  await expectStatus(pb.collection('items').getList(1, 10, { filter: long }), 400);
  await expectStatus(pb.collection('items').getList(1, 10, { filter: `name = "${'x'.repeat(3600)}"` }), 400);
});

test('sort, expand and fields', async () => {
  const byQty = (await pb.collection('items').getFullList({ sort: '-qty,name' })).map((r) => r.qty);
  assert.deepEqual(byQty, [10, 7.5, 5, 0]);
  const byOwner = (await pb.collection('items').getFullList({ sort: 'owner.name,-qty' })).map((r) => r.name);
  assert.deepEqual(byOwner, ['Cherry 100%', 'date_fruit', 'Apple', 'banana']);
  assert.equal((await pb.collection('items').getFullList({ sort: '@random' })).length, 4);
  await expectStatus(pb.collection('items').getList(1, 10, { sort: 'nope' }), 400);
  await expectStatus(pb.collection('items').getList(1, 10, { sort: 'a,b,c,d,e,f,g,h,i' }), 400);

  const withOwner = await pb.collection('items').getFirstListItem('name = "Apple"', { expand: 'owner' });
  assert.equal(withOwner.expand.owner.id, userA.id);
  assert.equal(withOwner.expand.owner.name, 'Alice');
  assert.equal(withOwner.expand.owner.password, undefined);
  const cherry = await pb.collection('items').getFirstListItem('name ~ "Cherry"', { expand: 'owner' });
  assert.equal(cherry.expand?.owner, undefined);

  const back = await pb.collection('users').getOne(userA.id, { expand: 'items_via_owner' });
  assert.deepEqual(back.expand.items_via_owner.map((x) => x.name).sort(), ['Apple', 'date_fruit']);

  const p = await pb.collection('posts').create({ title: 'Deep one', author: userB.id });
  await pb.collection('comments').create({ body: 'deep', post: p.id });
  const deep = await pb.collection('comments').getFirstListItem(`post = "${p.id}"`, { expand: 'post.author' });
  assert.equal(deep.expand.post.id, p.id);
  assert.equal(deep.expand.post.expand.author.name, 'Bob');

  const slim = await pb.collection('items').getFirstListItem('name = "Apple"', { fields: 'id,name' });
  assert.deepEqual(Object.keys(slim).sort(), ['id', 'name']);
  const nested = await pb.collection('items').getFirstListItem('name = "Apple"', { expand: 'owner', fields: 'name,expand.owner.name' });
  assert.deepEqual(nested, { name: 'Apple', expand: { owner: { name: 'Alice' } } });
  const listSlim = await pb.collection('items').getList(1, 2, { fields: 'qty' });
  assert.deepEqual(Object.keys(listSlim.items[0]), ['qty']);
  assert.equal(listSlim.page, 1);
});

test('collections: add, rename and remove fields keeps data', async () => {
  const before = await pb.collection('items').getFullList({ sort: 'name' });
  let items = await pb.collections.getOne('items');
  const fields = items.fields.map((x) => (x.name === 'qty' ? { ...x, name: 'quantity' } : x)).filter((x) => x.name !== 'ok');
  fields.push(f('note', 'text'));
  items = await pb.collections.update('items', { fields });
  const names = items.fields.map((x) => x.name);
  assert.ok(names.includes('quantity') && names.includes('note') && !names.includes('ok') && !names.includes('qty'));
  const after = await pb.collection('items').getFullList({ sort: 'name' });
  assert.equal(after.length, before.length);
  for (let i = 0; i < after.length; i++) {
    assert.equal(after[i].id, before[i].id);
    assert.equal(after[i].quantity, before[i].qty);
    assert.equal(after[i].note, '');
    assert.equal(after[i].ok, undefined);
    assert.deepEqual(after[i].labels, before[i].labels);
  }
  await pb.collections.update('items', { name: 'goods' });
  assert.equal((await pb.collection('goods').getFullList()).length, before.length);
  await expectStatus(pb.collection('items').getList(), 404);
});

test('injection: crafted filters and sorts are refused and change nothing', async () => {
  const count = async () => (await pb.collection('bulk').getList(1, 1)).totalItems;
  const n0 = await count();
  const filters = [
    'n = 1 OR 1=1',
    'n = 1; DROP TABLE bulk',
    "label = 'x' || 1 = 1 --",
    'label = "x\\" OR 1=1 --"',
    'id" OR 1=1 --',
    'n = (SELECT 1)',
    '@collection.sqlite_master.name = "bulk"',
    '@collection._collections.name != ""',
    'label = "\u0000"',
    'bulk.n = 1',
    "n = 1) OR (1=1",
    'label:lower() = 1',
  ];
  for (const filter of filters) {
    const r = await pb.collection('bulk').getList(1, 5, { filter }).then((x) => ({ ok: x }), (e) => ({ err: e }));
    if (r.ok) {
      // a filter that compiles may only ever match by value, never everything
      assert.ok(r.ok.totalItems <= 1, `${filter} matched ${r.ok.totalItems}`);
    } else {
      assert.equal(r.err.status, 400, `${filter}: ${JSON.stringify(r.err.response)}`);
    }
  }
  for (const sort of ['n; DROP TABLE bulk', 'n DESC, (SELECT 1)', '-n--', 'n)', '"n"', "n'", 'RANDOM()']) {
    await expectStatus(pb.collection('bulk').getList(1, 5, { sort }), 400);
  }
  const evil = await pb.collection('bulk').create({ label: "x'); DROP TABLE bulk; --", n: -1 });
  assert.equal((await pb.collection('bulk').getOne(evil.id)).label, "x'); DROP TABLE bulk; --");
  await pb.collection('bulk').delete(evil.id);
  assert.equal(await count(), n0);
  await expectStatus(pb.collection('bulk"; DROP TABLE bulk; --').getList(), 404);
  assert.equal(await count(), n0);
});

test('restart keeps every collection and record', async () => {
  const colls = (await pb.collections.getFullList()).map((c) => c.name).sort();
  const bulk = await pb.collection('bulk').getList(1, 1);
  await srv.stop();
  srv = await start({ dir, keepDir: true });
  pb = client(srv.url);
  await pb.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  assert.deepEqual((await pb.collections.getFullList()).map((c) => c.name).sort(), colls);
  assert.equal((await pb.collection('bulk').getList(1, 1)).totalItems, bulk.totalItems);
  const again = await pb.collection('posts').getOne(first.id);
  assert.equal(again.title, 'Hello world');
  assert.deepEqual(again.meta, { k: [1, 'two', null] });
});

test('collections: delete', async () => {
  const tmp = await pb.collections.create({ name: 'doomed', type: 'base', fields: [f('x', 'text')] });
  await pb.collection('doomed').create({ x: 'bye' });
  assert.equal(await pb.collections.delete(tmp.id), true);
  await expectStatus(pb.collections.getOne('doomed'), 404);
  await expectStatus(pb.collection('doomed').getList(), 404);
  // a collection referenced by a relation cannot be deleted; a system one neither
  await expectStatus(pb.collections.delete('posts'), 400);
  await expectStatus(pb.collections.delete('_superusers'), 400);
});

test('a password change, a CLI upsert or a delete ends a token at once (verified-token cache)', async () => {
  const { run } = await import('./lib/server.mjs');
  const email = 'second@example.com';
  const su2 = await pb.collection('_superusers').create({ email, password: 'first-password-1', passwordConfirm: 'first-password-1' });
  const asSu2 = async () => {
    const c = client(srv.url);
    await c.collection('_superusers').authWithPassword(email, 'first-password-1');
    return c.authStore.token;
  };
  // many requests, so every server thread has the token cached
  const ok = async (token, n = 16) => {
    const rs = await Promise.all(Array.from({ length: n }, () =>
      fetch(`${srv.url}/api/collections/_superusers/records/${su2.id}`, { headers: { Authorization: token } })));
    return rs.map((r) => r.status);
  };
  let token = await asSu2();
  assert.deepEqual(new Set(await ok(token)), new Set([200]));
  // a password change through the API
  await pb.collection('_superusers').update(su2.id, { password: 'second-password-2', passwordConfirm: 'second-password-2' });
  assert.deepEqual(new Set(await ok(token)), new Set([403]));
  // the same through another process (the CLI) while the server runs
  await pb.collection('_superusers').update(su2.id, { password: 'first-password-1', passwordConfirm: 'first-password-1' });
  token = await asSu2();
  assert.deepEqual(new Set(await ok(token)), new Set([200]));
  const r = await run(['superuser', 'upsert', email, 'third-password-3', '--dir', dir]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(new Set(await ok(token)), new Set([403]));
  // a deleted record holds no tokens
  await pb.collection('_superusers').update(su2.id, { password: 'first-password-1', passwordConfirm: 'first-password-1' });
  token = await asSu2();
  assert.deepEqual(new Set(await ok(token)), new Set([200]));
  await pb.collection('_superusers').delete(su2.id);
  const after = await fetch(`${srv.url}/api/collections`, { headers: { Authorization: token } });
  assert.ok([401, 403].includes(after.status), String(after.status));
});
