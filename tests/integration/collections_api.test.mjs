// Collections management and record bodies through the real `pocketbase` SDK: FormData
// (multipart) bodies, import, truncate, scaffolds, the collections list filter, back-relation
// expand and the :excerpt field modifier.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { expectStatus, startWithSuperuser } from './lib/pb.mjs';

let srv, pb, dir;

before(async () => {
  ({ srv, pb, dir } = await startWithSuperuser({ keepDir: true }));
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('import creates related collections in one go; a bad item changes nothing', async () => {
  await pb.collections.import([
    {
      name: 'articles',
      type: 'base',
      fields: [
        { name: 'title', type: 'text', required: true },
        { name: 'body', type: 'text' },
        { name: 'writer', type: 'relation', collectionId: 'writers00000001', maxSelect: 1 },
      ],
    },
    { id: 'writers00000001', name: 'writers', type: 'base', fields: [{ name: 'name', type: 'text' }] },
  ], false);
  const list = await pb.collections.getFullList({ filter: "name ~ 'writ' || name = 'articles'", sort: 'name' });
  assert.deepEqual(list.map((c) => c.name), ['articles', 'writers']);
  const e = await expectStatus(pb.collections.import([{ name: 'fresh' }, { name: 'bad name' }], false), 400);
  assert.equal(e.response.message, 'Failed to import collections.');
  assert.ok(e.response.data.collections['1']);
  await expectStatus(pb.collections.getOne('fresh'), 404);
});

test('scaffolds describe new base and auth collections', async () => {
  const s = await pb.collections.getScaffolds();
  assert.equal(s.base.type, 'base');
  assert.deepEqual(s.base.fields.map((f) => f.name), ['id']);
  assert.ok(s.auth.fields.some((f) => f.name === 'tokenKey' && f.hidden));
});

test('FormData bodies: inferred values, repeated keys and @jsonPayload', async () => {
  await pb.collections.create({
    name: 'forms',
    fields: [
      { name: 'code', type: 'text' },
      { name: 'n', type: 'number' },
      { name: 'ok', type: 'bool' },
      { name: 'tags', type: 'select', values: ['a', 'b', 'c'], maxSelect: 3 },
      { name: 'meta', type: 'json' },
    ],
  });
  const fd = new FormData();
  fd.append('code', '007');
  fd.append('n', '12.5');
  fd.append('ok', 'true');
  fd.append('tags', 'a');
  fd.append('tags', 'c');
  fd.append('@jsonPayload', JSON.stringify({ meta: { k: [1, 'x'] } }));
  const r = await pb.collection('forms').create(fd);
  assert.equal(r.code, '007');
  assert.equal(r.n, 12.5);
  assert.equal(r.ok, true);
  assert.deepEqual(r.tags, ['a', 'c']);
  assert.deepEqual(r.meta, { k: [1, 'x'] });
  const up = new FormData();
  up.append('n+', '1');
  const r2 = await pb.collection('forms').update(r.id, up);
  assert.equal(r2.n, 13.5);
});

test('back-relation expand, :excerpt and truncate', async () => {
  const w = await pb.collection('writers').create({ name: 'Wu' });
  for (let i = 0; i < 3; i++) {
    await pb.collection('articles').create({ title: `t${i}`, body: `<p>Some <b>long</b> text number ${i}</p>`, writer: w.id });
  }
  const got = await pb.collection('writers').getOne(w.id, { expand: 'articles_via_writer' });
  assert.equal(got.expand.articles_via_writer.length, 3);
  const picked = await pb.collection('articles').getList(1, 2, {
    sort: 'title',
    fields: 'id,title,body:excerpt(9,true),expand.writer.name',
    expand: 'writer',
  });
  assert.deepEqual(Object.keys(picked.items[0]).sort(), ['body', 'expand', 'id', 'title']);
  assert.equal(picked.items[0].body, 'Some long...');
  assert.deepEqual(picked.items[0].expand, { writer: { name: 'Wu' } });
  await pb.collections.truncate('articles');
  const after = await pb.collection('articles').getList(1, 10);
  assert.equal(after.totalItems, 0);
  // the writer stays: truncate deletes the articles only
  assert.equal((await pb.collection('writers').getOne(w.id)).name, 'Wu');
});
