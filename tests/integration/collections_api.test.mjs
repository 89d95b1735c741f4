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

test('editor and geoPoint fields: options, values, validation, filters', async () => {
  const col = await pb.collections.create({
    name: 'places',
    type: 'base',
    fields: [
      { name: 'name', type: 'text' },
      { name: 'notes', type: 'editor', maxSize: 40, convertURLs: true, presentable: true },
      { name: 'intro', type: 'editor', required: true },
      { name: 'loc', type: 'geoPoint' },
      { name: 'home', type: 'geoPoint', required: true, hidden: true },
    ],
  });
  const byName = Object.fromEntries(col.fields.map((x) => [x.name, x]));
  assert.equal(byName.notes.type, 'editor');
  assert.equal(byName.notes.maxSize, 40);
  assert.equal(byName.notes.convertURLs, true);
  assert.equal(byName.notes.presentable, true);
  assert.equal(byName.intro.maxSize, 0);
  assert.equal(byName.intro.convertURLs, false);
  assert.equal(byName.intro.required, true);
  assert.match(byName.notes.id, /^editor\d+$/);
  assert.equal(byName.loc.type, 'geoPoint');
  assert.equal(byName.loc.required, false);
  assert.equal(byName.home.required, true);
  assert.equal(byName.home.hidden, true);
  assert.equal((await pb.collections.getOne('places')).fields.find((x) => x.name === 'notes').maxSize, 40);
  const bad = await expectStatus(pb.collections.create({ name: 'badeditor', fields: [{ name: 'e', type: 'editor', maxSize: -1 }] }), 400);
  assert.ok(bad.response.data.fields);

  const ps = pb.collection('places');
  const sofia = await ps.create({ name: 'sofia', notes: '<p>hi</p>', intro: '<b>x</b>', loc: { lon: 23.32, lat: 42.69 }, home: { lon: 1, lat: 2 } });
  assert.equal(sofia.notes, '<p>hi</p>');
  assert.deepEqual(sofia.loc, { lon: 23.32, lat: 42.69 });
  assert.deepEqual(sofia.home, { lon: 1, lat: 2 }); // hidden, but a superuser sees it
  const plovdiv = await ps.create({ name: 'plovdiv', intro: 'p', loc: '{"lon":24.75,"lat":42.15}', home: { lon: 1, lat: 2 } });
  assert.deepEqual(plovdiv.loc, { lon: 24.75, lat: 42.15 });
  assert.equal(plovdiv.notes, '');
  const nowhere = await ps.create({ name: 'nowhere', intro: 'n', home: { lat: 5 } });
  assert.deepEqual(nowhere.loc, { lon: 0, lat: 0 });

  // validation, with PocketBase's codes
  let e = await expectStatus(ps.create({ name: 'x', notes: 'x'.repeat(41), loc: { lon: 200, lat: 0 }, home: { lon: 0, lat: 0 } }), 400);
  assert.equal(e.response.data.intro.code, 'validation_required');
  assert.equal(e.response.data.notes.code, 'validation_content_size_limit');
  assert.equal(e.response.data.notes.message, 'The maximum allowed content size is 40 bytes');
  assert.equal(e.response.data.loc.code, 'validation_invalid_longitude');
  assert.equal(e.response.data.home.code, 'validation_required');
  e = await expectStatus(ps.update(sofia.id, { loc: { lon: 10, lat: -91 } }), 400);
  assert.equal(e.response.data.loc.code, 'validation_invalid_latitude');
  e = await expectStatus(ps.update(sofia.id, { loc: { lon: 'east', lat: 1 } }), 400);
  assert.equal(e.response.data.loc.code, 'validation_invalid_value');
  e = await expectStatus(ps.update(sofia.id, { intro: '' }), 400);
  assert.equal(e.response.data.intro.code, 'validation_required');
  const upd = await ps.update(sofia.id, { notes: '<i>ok</i>', loc: { lon: 23.3219, lat: 42.6977 } });
  assert.equal(upd.notes, '<i>ok</i>');
  assert.deepEqual(upd.loc, { lon: 23.3219, lat: 42.6977 });

  // filters: lon / lat sub-paths and geoDistance
  const names = async (filter) => (await ps.getFullList({ filter, sort: 'name' })).map((r) => r.name);
  assert.deepEqual(await names('geoDistance(loc.lon, loc.lat, 23.32, 42.69) < 25'), ['sofia']);
  assert.deepEqual(await names('geoDistance(loc.lon, loc.lat, 23.32, 42.69) < 200'), ['plovdiv', 'sofia']);
  assert.deepEqual(await names('loc.lat > 42.5'), ['sofia']);
  assert.deepEqual(await names('loc.lon = 0 && loc.lat = 0'), ['nowhere']);
  assert.deepEqual(await names("notes ~ 'ok'"), ['sofia']);
  await expectStatus(ps.getList(1, 10, { filter: 'loc.alt > 1' }), 400);
  // hidden geoPoint: not filterable by clients, but a superuser can
  assert.deepEqual(await names('home.lat = 5'), ['nowhere']);

  // a field added to a collection with records: every record gets the zero point
  const cur = await pb.collections.getOne('places');
  await pb.collections.update('places', { fields: [...cur.fields, { name: 'spot', type: 'geoPoint' }, { name: 'bio', type: 'editor' }] });
  const again = await ps.getOne(sofia.id);
  assert.deepEqual(again.spot, { lon: 0, lat: 0 });
  assert.equal(again.bio, '');
  assert.deepEqual(again.loc, { lon: 23.3219, lat: 42.6977 });
});
