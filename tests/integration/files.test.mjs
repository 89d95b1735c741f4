// File fields through the real SDK: uploads with FormData/Blob on create and update (with the
// `field+` / `field-` modifiers), reads with pb.files.getURL (thumbnails checked by decoding the
// PNG header), Range, ETag/304, download, the headers of user files, protected files with and
// without a file token, bad uploads refused with the field named and nothing written, and the
// cleanup guarantees: files removed after deletes, orphans swept at start, and a kill -9 in the
// middle of uploads and deletes leaving every named file present and no unnamed one after
// restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { client, expectStatus, startWithSuperuser, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';
import { start } from './lib/server.mjs';
import { png, pngSize } from './lib/png.mjs';

let srv, su, user, dir, docs;

const IMG = png(64, 48);
const blob = (bytes, type = 'application/octet-stream') => new Blob([bytes], { type });

// every file under the collection's storage directory, as "recordId/name" (thumbs included)
function stored(collectionId) {
  const root = join(dir, 'storage', collectionId);
  if (!existsSync(root)) return [];
  const out = [];
  const walk = (d, rel) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), rel ? `${rel}/${e.name}` : e.name);
      else out.push(rel ? `${rel}/${e.name}` : e.name);
    }
  };
  walk(root, '');
  return out.sort();
}

async function get(url, headers = {}) {
  const r = await fetch(url, { headers });
  return { r, body: Buffer.from(await r.arrayBuffer()) };
}

before(async () => {
  ({ srv, pb: su, dir } = await startWithSuperuser());
  docs = await su.collections.create({
    name: 'docs',
    fields: [
      { name: 'title', type: 'text' },
      { name: 'owner', type: 'text' },
      { name: 'avatar', type: 'file', maxSelect: 1, maxSize: 100000, mimeTypes: ['image/png'],
        thumbs: ['50x50', '20x0', '0x12', '40x20f'] },
      { name: 'attachments', type: 'file', maxSelect: 3 },
      { name: 'secret', type: 'file', protected: true },
    ],
    listRule: '', viewRule: 'owner = @request.auth.id || owner = "public"',
    createRule: '', updateRule: '', deleteRule: '',
  });
  await su.collection('users').create({ email: 'f@example.com', password: 'passw0rd-123', passwordConfirm: 'passw0rd-123' });
  user = client(srv.url);
  await user.collection('users').authWithPassword('f@example.com', 'passw0rd-123');
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('the file field and its options round-trip through the collections API', async () => {
  const c = await su.collections.getOne('docs');
  const f = c.fields.find((x) => x.name === 'avatar');
  assert.equal(f.type, 'file');
  assert.equal(f.maxSize, 100000);
  assert.deepEqual(f.mimeTypes, ['image/png']);
  assert.deepEqual(f.thumbs, ['50x50', '20x0', '0x12', '40x20f']);
  assert.equal(c.fields.find((x) => x.name === 'secret').protected, true);
  const e = await expectStatus(su.collections.update('docs', {
    fields: [...c.fields, { name: 'bad', type: 'file', thumbs: ['axb'] }],
  }), 400);
  assert.ok(JSON.stringify(e.response.data).includes('validation_invalid_thumb_format'));
});

test('uploads with the SDK get PocketBase names and are served back byte for byte', async () => {
  const rec = await user.collection('docs').create({
    title: 'one',
    avatar: new File([IMG], 'My Photo.PNG', { type: 'image/png' }),
    attachments: [new File(['hello'], 'Hello World.txt'), new File(['{"a":1}'], 'data.json')],
  });
  assert.match(rec.avatar, /^my_photo_[a-z0-9]{10}\.PNG$/);
  assert.equal(rec.attachments.length, 2);
  assert.match(rec.attachments[0], /^hello_world_[a-z0-9]{10}\.txt$/);
  const { r, body } = await get(user.files.getURL(rec, rec.avatar));
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'image/png');
  assert.ok(body.equals(IMG));
  assert.match(r.headers.get('content-security-policy'), /^default-src 'none'/);
  assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(r.headers.get('content-disposition'), `inline; filename="${rec.avatar}"`);
  const txt = await get(user.files.getURL(rec, rec.attachments[0], { download: true }));
  assert.equal(txt.body.toString(), 'hello');
  assert.equal(txt.r.headers.get('content-type'), 'text/plain');
  assert.match(txt.r.headers.get('content-disposition'), /^attachment; /);
  // a JSON file is never served inline
  const js = await get(user.files.getURL(rec, rec.attachments[1]));
  assert.match(js.r.headers.get('content-disposition'), /^attachment; /);
  assert.deepEqual(stored(docs.id), [rec.avatar, ...rec.attachments].map((n) => `${rec.id}/${n}`).sort());
  // names the record does not hold, and other records' paths, are 404
  assert.equal((await get(`${srv.url}/api/files/docs/${rec.id}/nope.png`)).r.status, 404);
  assert.equal((await get(`${srv.url}/api/files/docs/xxxxxxxxxxxxxxx/${rec.avatar}`)).r.status, 404);
  assert.equal((await get(`${srv.url}/api/files/docs/${rec.id}/..%2F..%2Fapp.db`)).r.status, 404);
});

test('thumbnails have the asked size, only for listed sizes, and are cached on disk', async () => {
  const rec = await user.collection('docs').create({ avatar: blob(IMG, 'image/png') });
  const size = async (thumb) => pngSize((await get(user.files.getURL(rec, rec.avatar, { thumb }))).body);
  assert.deepEqual(await size('50x50'), [50, 50]);
  assert.deepEqual(await size('20x0'), [20, 15]);
  assert.deepEqual(await size('0x12'), [16, 12]);
  assert.deepEqual(await size('40x20f'), [27, 20]);
  assert.deepEqual(await size('100x100'), [100, 100]); // always allowed, as PocketBase
  assert.deepEqual(await size('30x30'), [64, 48]); // not listed: the original
  assert.deepEqual(await size('junk'), [64, 48]);
  const files = stored(docs.id).filter((p) => p.startsWith(`${rec.id}/thumbs_`));
  assert.deepEqual(files, ['100x100', '0x12', '20x0', '40x20f', '50x50']
    .map((s) => `${rec.id}/thumbs_${rec.avatar}/${s}_${rec.avatar}`).sort());
  // the cached one is served again, same bytes
  const a = await get(user.files.getURL(rec, rec.avatar, { thumb: '50x50' }));
  const b = await get(user.files.getURL(rec, rec.avatar, { thumb: '50x50' }));
  assert.ok(a.body.equals(b.body));
  assert.equal(a.r.headers.get('etag'), b.r.headers.get('etag'));
});

test('Range requests, ETag and 304', async () => {
  const rec = await user.collection('docs').create({ attachments: [new File(['0123456789'], 'digits.txt')] });
  const url = user.files.getURL(rec, rec.attachments[0]);
  const part = await get(url, { Range: 'bytes=2-5' });
  assert.equal(part.r.status, 206);
  assert.equal(part.body.toString(), '2345');
  assert.equal(part.r.headers.get('content-range'), 'bytes 2-5/10');
  const tail = await get(url, { Range: 'bytes=-3' });
  assert.equal(tail.body.toString(), '789');
  const open = await get(url, { Range: 'bytes=7-' });
  assert.equal(open.body.toString(), '789');
  const bad = await get(url, { Range: 'bytes=20-30' });
  assert.equal(bad.r.status, 416);
  assert.equal(bad.r.headers.get('content-range'), 'bytes */10');
  const full = await get(url);
  const etag = full.r.headers.get('etag');
  assert.ok(etag);
  const again = await get(url, { 'If-None-Match': etag });
  assert.equal(again.r.status, 304);
  assert.equal(again.body.length, 0);
});

test('field+ appends, field- removes, a new upload replaces; dropped files leave the disk', async () => {
  const rec = await user.collection('docs').create({
    avatar: blob(IMG, 'image/png'),
    attachments: [new File(['a'], 'a.txt')],
  });
  await get(user.files.getURL(rec, rec.avatar, { thumb: '50x50' })); // a thumb to clean up too
  let r = await user.collection('docs').update(rec.id, { 'attachments+': [new File(['b'], 'b.txt'), new File(['c'], 'c.txt')] });
  assert.equal(r.attachments.length, 3);
  assert.equal(r.attachments[0], rec.attachments[0]);
  r = await user.collection('docs').update(rec.id, { 'attachments-': [rec.attachments[0]] });
  assert.equal(r.attachments.length, 2);
  assert.ok(!r.attachments.includes(rec.attachments[0]));
  assert.equal((await get(user.files.getURL(r, rec.attachments[0]))).r.status, 404);
  const r2 = await user.collection('docs').update(rec.id, { avatar: new File([png(8, 8)], 'new.png') });
  assert.notEqual(r2.avatar, rec.avatar);
  const names = stored(docs.id).filter((p) => p.startsWith(`${rec.id}/`));
  assert.deepEqual(names, [r2.avatar, ...r.attachments].map((n) => `${rec.id}/${n}`).sort());
  // a JSON body keeping a subset works; naming a file the record never had does not
  const r3 = await user.collection('docs').update(rec.id, { attachments: [r.attachments[1]] });
  assert.deepEqual(r3.attachments, [r.attachments[1]]);
  assert.ok(!existsSync(join(dir, 'storage', docs.id, rec.id, r.attachments[0])));
  const e = await expectStatus(user.collection('docs').update(rec.id, { attachments: ['other_0123456789.txt'] }), 400);
  assert.equal(e.response.data.attachments.code, 'validation_invalid_file');
  // a client cannot smuggle the uploads list in
  await expectStatus(user.collection('docs').update(rec.id, { attachments: ['x_0123456789.txt'], '@uploads': { attachments: ['x_0123456789.txt'] } }), 400);
  // clearing the field removes the file
  const r4 = await user.collection('docs').update(rec.id, { avatar: null });
  assert.equal(r4.avatar, '');
  assert.ok(!existsSync(join(dir, 'storage', docs.id, rec.id, r2.avatar)));
});

test('bad uploads get 400 naming the field, and nothing is written', async () => {
  const before = stored(docs.id);
  const total = (await su.collection('docs').getList(1, 1)).totalItems;
  const big = await expectStatus(user.collection('docs').create({ avatar: new File([Buffer.concat([IMG, Buffer.alloc(100001)])], 'big.png') }), 400);
  assert.equal(big.response.message, 'Failed to create record.');
  assert.equal(big.response.data.avatar.code, 'validation_file_size_limit');
  // the client's type says PNG, the bytes say text
  const wrong = await expectStatus(user.collection('docs').create({ avatar: new File(['not a png'], 'x.png', { type: 'image/png' }) }), 400);
  assert.equal(wrong.response.data.avatar.code, 'validation_invalid_mime_type');
  const many = await expectStatus(user.collection('docs').create({
    attachments: [1, 2, 3, 4].map((i) => new File([`f${i}`], `f${i}.txt`)),
  }), 400);
  assert.equal(many.response.data.attachments.code, 'validation_too_many_files');
  // a good file beside a bad one is not kept either
  await expectStatus(user.collection('docs').create({
    attachments: [new File(['ok'], 'ok.txt')], avatar: new File(['nope'], 'n.png'),
  }), 400);
  // a truncated multipart body
  const fd = new FormData();
  fd.append('attachments', new File(['zzzz'], 'z.txt'));
  const full = Buffer.from(await new Response(fd).arrayBuffer());
  const ctype = new Response(fd).headers.get('content-type');
  const cut = await fetch(`${srv.url}/api/collections/docs/records`, {
    method: 'POST', headers: { 'Content-Type': ctype }, body: full.subarray(0, full.length - 20),
  });
  assert.equal(cut.status, 400);
  assert.equal((await cut.json()).status, 400);
  assert.deepEqual(stored(docs.id), before);
  assert.equal((await su.collection('docs').getList(1, 1)).totalItems, total);
});

test('uploads inside a batch: stored with the commit, removed with a failed batch', async () => {
  await su.settings.update({ batch: { enabled: true, maxRequests: 10 } });
  const first = await user.collection('docs').create({ attachments: [new File(['1'], 'one.txt')] });
  const b = user.createBatch();
  b.collection('docs').create({ title: 'batched', avatar: new File([IMG], 'b.png') });
  b.collection('docs').update(first.id, { 'attachments+': new File(['2'], 'two.txt') });
  const res = await b.send();
  assert.deepEqual(res.map((r) => r.status), [200, 200]);
  const made = res[0].body;
  assert.match(made.avatar, /^b[a-z0-9]{10}_[a-z0-9]{10}\.png$/); // short names get a random part
  assert.ok((await get(user.files.getURL(made, made.avatar))).body.equals(IMG));
  assert.equal(res[1].body.attachments.length, 2);
  const before = stored(docs.id);
  const bad = user.createBatch();
  bad.collection('docs').create({ attachments: [new File(['3'], 'three.txt')] });
  bad.collection('docs').create({ avatar: new File(['not an image'], 'x.png') });
  const e = await expectStatus(bad.send(), 400);
  assert.equal(e.response.data.requests['1'].response.data.avatar.code, 'validation_invalid_mime_type');
  assert.deepEqual(stored(docs.id), before);
});

test('protected files need a file token of a record that passes the viewRule', async () => {
  const me = user.authStore.record.id;
  const rec = await user.collection('docs').create({ owner: me, secret: new File(['top secret'], 'plan.txt') });
  const plain = user.files.getURL(rec, rec.secret);
  assert.equal((await get(plain)).r.status, 404);
  // an auth token is not a file token
  assert.equal((await get(`${plain}?token=${encodeURIComponent(user.authStore.token)}`)).r.status, 404);
  const token = await user.files.getToken();
  const ok = await get(user.files.getURL(rec, rec.secret, { token }));
  assert.equal(ok.r.status, 200);
  assert.equal(ok.body.toString(), 'top secret');
  assert.match(ok.r.headers.get('cache-control'), /private/);
  // a file token is not an auth token
  const asAuth = await fetch(`${srv.url}/api/collections/users/auth-refresh`, { method: 'POST', headers: { Authorization: token } });
  assert.equal(asAuth.status, 401);
  // another user's token fails the viewRule; a superuser's passes
  await su.collection('users').create({ email: 'g@example.com', password: 'passw0rd-123', passwordConfirm: 'passw0rd-123' });
  const other = client(srv.url);
  await other.collection('users').authWithPassword('g@example.com', 'passw0rd-123');
  const otherToken = await other.files.getToken();
  assert.equal((await get(user.files.getURL(rec, rec.secret, { token: otherToken }))).r.status, 404);
  assert.equal((await get(su.files.getURL(rec, rec.secret, { token: await su.files.getToken() }))).r.status, 200);
  // guests get no token
  await expectStatus(client(srv.url).files.getToken(), 401);
});

test('deleting a record, a file field or a collection removes its files', async () => {
  const rec = await user.collection('docs').create({ attachments: [new File(['d'], 'd.txt')], avatar: blob(IMG) });
  await get(user.files.getURL(rec, rec.avatar, { thumb: '50x50' }));
  assert.ok(existsSync(join(dir, 'storage', docs.id, rec.id)));
  await user.collection('docs').delete(rec.id);
  assert.ok(!existsSync(join(dir, 'storage', docs.id, rec.id)));

  const tmp = await su.collections.create({ name: 'tmpfiles', fields: [{ name: 'f', type: 'file' }, { name: 'g', type: 'file' }], createRule: '' });
  const a = await su.collection('tmpfiles').create({ f: new File(['1'], 'one.txt'), g: new File(['2'], 'two.txt') });
  const c = await su.collections.getOne('tmpfiles');
  await su.collections.update('tmpfiles', { fields: c.fields.filter((x) => x.name !== 'g') });
  assert.ok(existsSync(join(dir, 'storage', tmp.id, a.id, a.f)));
  assert.ok(!existsSync(join(dir, 'storage', tmp.id, a.id, a.g)));
  await su.collections.delete('tmpfiles');
  assert.ok(!existsSync(join(dir, 'storage', tmp.id)));
});

// The whole storage tree must hold exactly the files the records name (thumbs aside).
async function assertConsistent(pb, collectionId, name, fields = ['avatar', 'attachments', 'secret']) {
  const recs = await pb.collection(name).getFullList();
  const named = [];
  for (const r of recs) for (const f of fields) {
    for (const n of [r[f]].flat().filter(Boolean)) named.push(`${r.id}/${n}`);
  }
  const onDisk = stored(collectionId).filter((p) => !p.split('/')[1].startsWith('thumbs_'));
  assert.deepEqual(onDisk, named.sort());
}

test('a view collection serves the files of the records it shows, thumbnails included', async () => {
  const me = (await su.collection('users').create({ email: 'v@example.com', password: 'passw0rd-123', passwordConfirm: 'passw0rd-123' })).id;
  const rec = await user.collection('docs').create({ owner: me, avatar: blob(IMG, 'image/png'), attachments: [new File(['va'], 'va.txt')] });
  // the view's id is the owner's, not the record's: the file is found through the query
  const view = await su.collections.create({
    name: 'owner_files', type: 'view', listRule: '', viewRule: '',
    viewQuery: 'SELECT users.id AS id, docs.avatar AS picture, docs.attachments AS files, docs.title AS title FROM users JOIN docs ON docs.owner = users.id',
  });
  const pic = view.fields.find((f) => f.name === 'picture');
  assert.equal(pic.type, 'file');
  assert.deepEqual(pic.thumbs, ['50x50', '20x0', '0x12', '40x20f']);
  const vr = await user.collection('owner_files').getOne(me);
  assert.equal(vr.picture, rec.avatar);
  assert.notEqual(vr.id, rec.id);
  const orig = await get(user.files.getURL(vr, vr.picture));
  assert.equal(orig.r.status, 200);
  assert.deepEqual(orig.body, IMG);
  assert.equal(orig.r.headers.get('content-type'), 'image/png');
  assert.deepEqual(pngSize((await get(user.files.getURL(vr, vr.picture, { thumb: '50x50' }))).body), [50, 50]);
  assert.equal((await get(user.files.getURL(vr, vr.files[0]))).body.toString(), 'va');
  // a name the view record does not show: 404
  const other = await user.collection('docs').create({ attachments: [new File(['o'], 'o.txt')] });
  assert.equal((await get(user.files.getURL(vr, other.attachments[0]))).r.status, 404);
  assert.equal((await get(`${srv.url}/api/files/owner_files/${me}/${rec.avatar}x`)).r.status, 404);
  // when the source record goes, so does the view's file
  await user.collection('docs').delete(rec.id);
  assert.equal((await get(user.files.getURL(vr, vr.picture))).r.status, 404);
  await su.collections.delete('owner_files');
});

test('a cascade delete removes the files of every record it deletes, at once and after a kill -9', async () => {
  const authors = await su.collections.create({
    name: 'authors', listRule: '', viewRule: '', createRule: '', deleteRule: '',
    fields: [{ name: 'name', type: 'text' }, { name: 'photo', type: 'file', thumbs: ['20x20'] }],
  });
  const pages = await su.collections.create({
    name: 'pages', listRule: '', viewRule: '', createRule: '', deleteRule: '',
    fields: [{ name: 'author', type: 'relation', collectionId: authors.id, cascadeDelete: true, maxSelect: 1 },
      { name: 'scans', type: 'file', maxSelect: 5, thumbs: ['20x20'] }],
  });
  const withPages = async (name) => {
    const a = await su.collection('authors').create({ name, photo: new File([IMG], 'p.png') });
    const ps = [];
    for (let i = 0; i < 2; i++) ps.push(await su.collection('pages').create({ author: a.id, scans: [new File([IMG], 's.png'), new File([`t${i}`], 't.txt')] }));
    return [a, ps];
  };
  // at once: the delete answers after the files of the author and of its pages are gone
  const [a, ps] = await withPages('a');
  await get(su.files.getURL(ps[0], ps[0].scans[0], { thumb: '20x20' }));
  await get(su.files.getURL(a, a.photo, { thumb: '20x20' }));
  assert.equal(stored(pages.id).length, 5);
  await su.collection('authors').delete(a.id);
  assert.deepEqual(stored(pages.id), []);
  assert.deepEqual(stored(authors.id), []);
  assert.ok(!existsSync(join(dir, 'storage', pages.id, ps[0].id)));
  // in a batch too
  await su.settings.update({ batch: { enabled: true, maxRequests: 10 } });
  const [b] = await withPages('b');
  const batch = su.createBatch();
  batch.collection('authors').delete(b.id);
  await batch.send();
  assert.deepEqual(stored(pages.id), []);

  // what a kill -9 between a cascade's COMMIT and its file removal leaves (the rows gone, the
  // files there), made by deleting the rows while the server is down: swept at start
  const [c, cps] = await withPages('c');
  await srv.stop('SIGKILL');
  const r = spawnSync('sqlite3', [join(dir, 'app.db')], { input: `DELETE FROM pages WHERE author = '${c.id}'; DELETE FROM authors WHERE id = '${c.id}';`, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(stored(pages.id).length, 4);
  srv = await start({ dir, keepDir: true });
  su = client(srv.url);
  await su.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  assert.deepEqual(stored(pages.id), []);
  assert.ok(!existsSync(join(dir, 'storage', authors.id, c.id)));
  assert.ok(!existsSync(join(dir, 'storage', pages.id, cps[0].id)));

  // cascades in flight when the process is killed
  const made = [];
  for (let i = 0; i < 8; i++) made.push(await withPages(`k${i}`));
  const work = made.map(([x]) => su.collection('authors').delete(x.id).catch(() => {}));
  await new Promise((res) => setTimeout(res, 15));
  await srv.stop('SIGKILL');
  await Promise.all(work);
  srv = await start({ dir, keepDir: true });
  su = client(srv.url);
  await su.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  user = client(srv.url);
  await user.collection('users').authWithPassword('f@example.com', 'passw0rd-123');
  await assertConsistent(su, pages.id, 'pages', ['scans']);
  await assertConsistent(su, authors.id, 'authors', ['photo']);
});

test('orphans are swept at start; a kill -9 amid uploads and deletes leaves none', async () => {
  const keep = await user.collection('docs').create({ attachments: [new File(['k'], 'keep.txt')] });
  await srv.stop('SIGKILL');
  // what a crash can leave: an upload whose record never committed, the files of a record
  // whose delete committed, a temporary file, a collection that is gone
  mkdirSync(join(dir, 'storage', docs.id, keep.id), { recursive: true });
  writeFileSync(join(dir, 'storage', docs.id, keep.id, 'orphan_0123456789.txt'), 'x');
  writeFileSync(join(dir, 'storage', docs.id, keep.id, 'keep.txt.tmp-abcd'), 'x');
  mkdirSync(join(dir, 'storage', docs.id, 'deletedrecord00'), { recursive: true });
  writeFileSync(join(dir, 'storage', docs.id, 'deletedrecord00', 'a_0123456789.txt'), 'x');
  mkdirSync(join(dir, 'storage', 'pbc_gone', 'r1'), { recursive: true });
  writeFileSync(join(dir, 'storage', 'pbc_gone', 'r1', 'a.txt'), 'x');
  srv = await start({ dir, keepDir: true });
  su = client(srv.url);
  await su.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  assert.ok(!existsSync(join(dir, 'storage', 'pbc_gone')));
  await assertConsistent(su, docs.id, 'docs');
  assert.ok(existsSync(join(dir, 'storage', docs.id, keep.id, keep.attachments[0])));

  // uploads, replacements and deletes in flight when the process is killed
  const work = [];
  for (let i = 0; i < 40; i++) {
    work.push(su.collection('docs').create({ attachments: [new File([`w${i}`], `w${i}.txt`)] })
      .then((r) => (i % 2 ? su.collection('docs').update(r.id, { attachments: [new File(['n'], 'n.txt')] })
        : su.collection('docs').delete(r.id)))
      .catch(() => {}));
  }
  await new Promise((r) => setTimeout(r, 30));
  await srv.stop('SIGKILL');
  await Promise.all(work);
  srv = await start({ dir, keepDir: true });
  su = client(srv.url);
  await su.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  await assertConsistent(su, docs.id, 'docs');
});
