// View collections end to end through the real `pocketbase` SDK: a view over two collections
// with its fields inferred as PocketBase does, read with list/view rules, filters, sort and
// expand; refused writes; refused queries (writes, several statements, `*`, system tables, no
// id); scaffolds and dry-run-view; the base tables changing under a view; its warehouse mirror.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { client, expectStatus, startWithSuperuserAndKey } from './lib/pb.mjs';

let srv, pb, dir, token;
const users = [];

before(async () => {
  ({ srv, pb, dir, token } = await startWithSuperuserAndKey({ keepDir: true }));
  await pb.collections.update('users', { listRule: '', viewRule: '' });
  for (const name of ['ada', 'bob', 'cy']) {
    users.push(await pb.collection('users').create({
      email: `${name}@example.com`, password: 'password123', passwordConfirm: 'password123', name,
    }));
  }
  await pb.collections.create({
    name: 'posts',
    listRule: '',
    viewRule: '',
    fields: [
      { name: 'title', type: 'text', required: true },
      { name: 'author', type: 'relation', collectionId: '_pb_users_auth_', maxSelect: 1 },
      { name: 'views', type: 'number' },
      { name: 'published', type: 'bool' },
    ],
  });
  const posts = [[0, 'a1', 10, true], [0, 'a2', 5, true], [0, 'a3', 1, false], [1, 'b1', 7, true]];
  for (const [u, title, views, published] of posts) {
    await pb.collection('posts').create({ title, author: users[u].id, views, published });
  }
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

const COUNTS = `
  SELECT p.author AS id, p.author AS author, u.name AS name, count(p.id) AS total,
         cast(sum(p.views) AS real) AS views, max(p.published) AS anyPublished
  FROM posts p JOIN users u ON u.id = p.author
  GROUP BY p.author;`;

test('a view collection infers its fields from its query', async () => {
  const c = await pb.collections.create({ name: 'post_counts', type: 'view', listRule: '', viewRule: '', viewQuery: COUNTS });
  assert.equal(c.type, 'view');
  assert.equal(c.viewQuery, COUNTS.trim().replace(/;$/, ''));
  const f = Object.fromEntries(c.fields.map((x) => [x.name, x]));
  assert.deepEqual(c.fields.map((x) => x.name), ['id', 'author', 'name', 'total', 'views', 'anyPublished']);
  assert.equal(f.id.type, 'text');
  assert.equal(f.id.primaryKey, true);
  assert.equal(f.author.type, 'relation'); // a relation field copied from posts
  assert.equal(f.author.collectionId, '_pb_users_auth_');
  assert.equal(f.name.type, 'text'); // users.name, with its options
  assert.equal(f.name.max, 255);
  assert.equal(f.total.type, 'number'); // count()
  assert.equal(f.views.type, 'number'); // cast(... as real)
  assert.equal(f.anyPublished.type, 'json'); // any other expression
  assert.deepEqual(c.indexes, []);
  assert.equal(c.createRule, null);
  const again = await pb.collections.getOne('post_counts');
  assert.deepEqual(again.fields, c.fields);
});

test('view records: list and view rules, filter, sort, expand', async () => {
  const anon = client(srv.url);
  const list = await anon.collection('post_counts').getList(1, 10, { sort: '-total', expand: 'author' });
  assert.equal(list.totalItems, 2);
  assert.deepEqual(list.items.map((r) => [r.name, r.total, r.views]), [['ada', 3, 16], ['bob', 1, 7]]);
  assert.equal(list.items[0].expand.author.id, users[0].id);
  assert.equal(list.items[0].collectionName, 'post_counts');
  const filtered = await anon.collection('post_counts').getFullList({ filter: 'total >= 2 && name = "ada"' });
  assert.deepEqual(filtered.map((r) => r.id), [users[0].id]);
  const one = await anon.collection('post_counts').getOne(users[1].id);
  assert.equal(one.total, 1);
  await expectStatus(anon.collection('post_counts').getOne(users[2].id), 404);
  // the rules are enforced: only superusers once listRule is null; a rule can filter rows
  await pb.collections.update('post_counts', { listRule: null, viewRule: 'total > 2' });
  await expectStatus(anon.collection('post_counts').getList(), 403);
  await expectStatus(anon.collection('post_counts').getOne(users[1].id), 404);
  assert.equal((await anon.collection('post_counts').getOne(users[0].id)).total, 3);
  await pb.collections.update('post_counts', { listRule: '', viewRule: '' });
  // the view follows its tables
  await pb.collection('posts').create({ title: 'c1', author: users[2].id, views: 2 });
  assert.equal((await anon.collection('post_counts').getOne(users[2].id)).total, 1);
});

test('view records cannot be written', async () => {
  for (const write of [
    () => pb.collection('post_counts').create({ id: 'x', total: 1 }),
    () => pb.collection('post_counts').update(users[0].id, { total: 9 }),
    () => pb.collection('post_counts').delete(users[0].id),
  ]) {
    const e = await expectStatus(write(), 400);
    assert.equal(e.response.message, 'Unsupported collection type.');
  }
  await pb.settings.update({ batch: { enabled: true, maxRequests: 5 } });
  const batch = pb.createBatch();
  batch.collection('post_counts').create({ total: 1 });
  await expectStatus(batch.send(), 400);
  await expectStatus(pb.collections.truncate('post_counts'), 400);
  assert.equal((await pb.collection('post_counts').getOne(users[0].id)).total, 3);
  // create/update/delete rules mean nothing on a view
  const e = await expectStatus(pb.collections.update('post_counts', { createRule: '' }), 400);
  assert.ok(e.response.data.createRule);
});

test('queries that write, read system tables or are not one plain SELECT are refused', async () => {
  const bad = [
    ['DELETE FROM posts RETURNING id', /read-only|only read/],
    ["UPDATE posts SET title = 'x'", /read-only|only read/],
    ['SELECT id FROM posts; DELETE FROM posts', /exactly one/],
    ['SELECT * FROM posts', /Wildcard/],
    ['SELECT p.* FROM posts p', /Wildcard/],
    ['SELECT id, spec FROM _collections', /only read/],
    ['SELECT id FROM _outbox', /only read/],
    ['SELECT title FROM posts', /Missing required id/],
    ['SELECT id, title FROM nosuch', /only read|no such table/],
    ['SELECT id, count(*) FROM posts', /alias/],
    ['PRAGMA table_info(posts)', /only read|read-only|exactly one/],
    ['SELECT id, title AS t, title AS T FROM posts', /Duplicated/],
    ['', /blank/i],
  ];
  for (const [q, why] of bad) {
    const e = await expectStatus(pb.collections.create({ name: 'bad_view', type: 'view', viewQuery: q }), 400);
    assert.ok(e.response.data.viewQuery, `${q}: ${JSON.stringify(e.response)}`);
    assert.match(e.response.data.viewQuery.message, why, q);
  }
  await expectStatus(pb.collections.getOne('bad_view'), 404);
  assert.equal((await pb.collection('posts').getFullList()).length, 5); // nothing was deleted
});

test('scaffolds include the view scaffold; dry-run-view infers without saving', async () => {
  const s = await pb.collections.getScaffolds();
  assert.equal(s.view.type, 'view');
  assert.equal(s.view.viewQuery, '');
  assert.deepEqual(s.view.fields, []);
  assert.equal(s.view.createRule, null);
  const r = await pb.collections.dryRunViewQuery('SELECT id, title, (views * 2) AS double FROM posts');
  assert.deepEqual(r.fields.map((f) => [f.name, f.type]), [['id', 'text'], ['title', 'text'], ['double', 'json']]);
  const e = await expectStatus(pb.collections.dryRunViewQuery('DROP TABLE posts'), 400);
  assert.ok(e.response.data.viewQuery);
  await expectStatus(client(srv.url).collections.dryRunViewQuery('SELECT id FROM posts'), 401);
});

test('a base collection changes under its view; a table a view reads cannot go', async () => {
  // a new field, then a table rebuild (a single select becoming multiple) leave the view working
  let posts = await pb.collections.getOne('posts');
  posts.fields.push({ name: 'tags', type: 'select', values: ['x', 'y'], maxSelect: 1 });
  await pb.collections.update('posts', { fields: posts.fields });
  posts = await pb.collections.getOne('posts');
  posts.fields.find((f) => f.name === 'tags').maxSelect = 2;
  await pb.collections.update('posts', { fields: posts.fields });
  assert.equal((await pb.collection('post_counts').getOne(users[0].id)).total, 3);
  // dropping a column the view reads, or the whole table, is refused
  const now = await pb.collections.getOne('posts');
  const e = await expectStatus(pb.collections.update('posts', { fields: now.fields.filter((f) => f.name !== 'views') }), 400);
  assert.match(JSON.stringify(e.response.data), /post_counts/);
  await expectStatus(pb.collections.delete('posts'), 400);
  assert.equal((await pb.collection('posts').getFullList()).length, 5);
  // a view's own query can change: its fields follow
  const c = await pb.collections.update('post_counts', { viewQuery: 'SELECT id, title FROM posts' });
  assert.deepEqual(c.fields.map((f) => f.name), ['id', 'title']);
  assert.equal((await pb.collection('post_counts').getFullList()).length, 5);
  // a view over a view
  await pb.collections.create({ name: 'titles', type: 'view', listRule: '', viewQuery: 'SELECT id, title AS t FROM post_counts' });
  assert.equal((await pb.collection('titles').getFullList()).length, 5);
  await expectStatus(pb.collections.delete('post_counts'), 400); // titles reads it
  await pb.collections.delete('titles');
  await pb.collections.delete('post_counts');
  await pb.collections.delete('posts'); // no view reads it any more
});

test('a view collection is mirrored to the warehouse as a DuckDB view', async () => {
  await pb.collections.create({ name: 'shelf', listRule: '', fields: [{ name: 'label', type: 'text' }, { name: 'n', type: 'number' }] });
  for (const [label, n] of [['a', 1], ['a', 2], ['b', 5]]) await pb.collection('shelf').create({ label, n });
  await pb.collections.create({
    name: 'shelf_sums', type: 'view', listRule: '',
    viewQuery: 'SELECT min(id) AS id, label, sum(n) AS total FROM shelf GROUP BY label',
  });
  const query = 'SELECT label, total FROM app_shelf_sums ORDER BY label';
  const deadline = Date.now() + 10000;
  for (;;) {
    const res = await fetch(`${srv.url}/api/warehouse/sql`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: token },
      body: JSON.stringify({ query }),
    });
    const j = await res.json();
    if (res.status === 200 && j.rows.length === 2 && Number(j.rows[1][1]) === 5) {
      assert.deepEqual(j.rows.map((r) => [r[0], Number(r[1])]), [['a', 3], ['b', 5]]);
      const kind = await fetch(`${srv.url}/api/warehouse/sql`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: token },
        body: JSON.stringify({ query: "SELECT table_type FROM information_schema.tables WHERE table_name = 'app_shelf_sums'" }),
      }).then((r) => r.json());
      assert.equal(kind.rows[0][0], 'VIEW');
      break;
    }
    assert.ok(Date.now() < deadline, `view mirror not visible: ${JSON.stringify(j)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
});
