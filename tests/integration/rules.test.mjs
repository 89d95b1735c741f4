// API rules and auth records through the real `pocketbase` SDK, as users: sign-up, sign-in,
// refresh; object-level authorisation (BOLA) on every record route; token tampering; mass
// assignment; email visibility; authRule; rate limits. Tokens are crafted with node:crypto
// and the data directory's secret (lib/tokens.mjs), with a control showing the crafting
// itself is right, so "refused" results cannot come from a broken forger.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { start } from './lib/server.mjs';
import { client, expectStatus, startWithSuperuser } from './lib/pb.mjs';
import { HS256, claims, collectionSecret, craft, decode } from './lib/tokens.mjs';

let srv, su, dir;
let users, posts, comments, members;
let A, B; // user records
let pbA, pbB; // SDK clients signed in as A and B
const PW_A = 'passw0rd-alice';
const PW_B = 'passw0rd-bob';
const OWN = '@request.auth.id != "" && author = @request.auth.id';

before(async () => {
  ({ srv, pb: su, dir } = await startWithSuperuser({ keepDir: true }));
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

const f = (name, type, extra = {}) => ({ name, type, ...extra });
const now = () => Math.floor(Date.now() / 1000);

// A raw request with an Authorization header (or none); returns {status, body}.
async function raw(method, path, token, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (token !== undefined) headers.Authorization = token;
  const r = await fetch(`${srv.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null, headers: r.headers };
}

// What a token makes of the request: the ids of the posts it can list (a guest sees none).
async function visiblePosts(token) {
  const r = await raw('GET', '/api/collections/posts/records?perPage=100', token);
  assert.equal(r.status, 200, `a bad token is never an error by itself: ${JSON.stringify(r.body)}`);
  return r.body.items.map((x) => x.id).sort();
}

test('the default users collection has PocketBase rules', async () => {
  users = await su.collections.getOne('users');
  assert.equal(users.id, '_pb_users_auth_');
  for (const r of ['listRule', 'viewRule', 'updateRule', 'deleteRule']) assert.equal(users[r], 'id = @request.auth.id', r);
  assert.equal(users.createRule, '');
  assert.equal(users.authRule, '');
  assert.equal(users.manageRule, null);
  const names = users.fields.map((x) => x.name);
  for (const n of ['id', 'password', 'tokenKey', 'email', 'emailVisibility', 'verified', 'name']) assert.ok(names.includes(n), n);
  assert.equal(users.fields.find((x) => x.name === 'tokenKey').hidden, true);
  assert.equal(users.fields.find((x) => x.name === 'password').hidden, true);
});

test('sign up, log in, refresh, auth-methods', async () => {
  const guest = client(srv.url);
  A = await guest.collection('users').create({ email: 'alice@example.com', password: PW_A, passwordConfirm: PW_A, name: 'Alice' });
  B = await guest.collection('users').create({ email: 'bob@example.com', password: PW_B, passwordConfirm: PW_B, name: 'Bob' });
  assert.equal(A.password, undefined);
  assert.equal(A.tokenKey, undefined);
  assert.equal(A.verified, false);
  assert.equal(A.email, undefined, 'a guest does not see an email that is not visible');
  // password rules and confirmation
  let e = await expectStatus(guest.collection('users').create({ email: 'c@example.com', password: 'short', passwordConfirm: 'short' }), 400);
  assert.ok(e.response.data.password);
  e = await expectStatus(guest.collection('users').create({ email: 'c@example.com', password: 'long-enough-1', passwordConfirm: 'other-thing-1' }), 400);
  assert.equal(e.response.data.passwordConfirm.code, 'validation_values_mismatch');
  e = await expectStatus(guest.collection('users').create({ email: 'alice@example.com', password: PW_A, passwordConfirm: PW_A }), 400);
  assert.equal(e.response.data.email.code, 'validation_not_unique');

  pbA = client(srv.url);
  pbB = client(srv.url);
  const authA = await pbA.collection('users').authWithPassword('alice@example.com', PW_A);
  await pbB.collection('users').authWithPassword('bob@example.com', PW_B);
  assert.equal(authA.record.id, A.id);
  assert.equal(authA.record.email, 'alice@example.com', 'the owner sees its email');
  assert.equal(authA.record.tokenKey, undefined);
  assert.equal(authA.record.password, undefined);
  const c = decode(authA.token).claims;
  assert.deepEqual(Object.keys(c), ['collectionId', 'exp', 'id', 'refreshable', 'type']);
  assert.equal(c.collectionId, users.id);
  assert.equal(c.id, A.id);
  assert.equal(c.type, 'auth');
  assert.ok(c.exp > now() + 432000 - 60 && c.exp <= now() + 432000 + 5);
  await expectStatus(client(srv.url).collection('users').authWithPassword('alice@example.com', 'wrong-password'), 400);
  await expectStatus(client(srv.url).collection('users').authWithPassword('nobody@example.com', PW_A), 400);

  const ref = await pbA.collection('users').authRefresh();
  assert.equal(ref.record.id, A.id);
  assert.equal(ref.record.email, 'alice@example.com');
  assert.ok(ref.token);
  e = await expectStatus(client(srv.url).collection('users').authRefresh(), 401);
  // a superuser token on users' auth-refresh: another collection
  await expectStatus(su.collection('users').authRefresh(), 403);

  const methods = await client(srv.url).collection('users').listAuthMethods();
  assert.deepEqual(methods.password, { identityFields: ['email'], enabled: true });

  // the default rules: each user sees only itself
  const seen = await pbA.collection('users').getFullList();
  assert.deepEqual(seen.map((x) => x.id), [A.id]);
  await expectStatus(pbA.collection('users').getOne(B.id), 404);
  await expectStatus(pbA.collection('users').update(B.id, { name: 'pwned' }), 404);
  await expectStatus(pbA.collection('users').delete(B.id), 404);
  assert.equal((await su.collection('users').getOne(B.id)).name, 'Bob');
  assert.deepEqual((await client(srv.url).collection('users').getList()).items, []);
});

let pA1, pA2, pB1, cA, cB;
test('setup: posts and comments with author = @request.auth.id rules', async () => {
  posts = await su.collections.create({
    name: 'posts',
    fields: [f('title', 'text'), f('author', 'relation', { collectionId: users.id, maxSelect: 1 }),
      f('editor', 'relation', { collectionId: users.id, maxSelect: 1 }), f('secret', 'text', { hidden: true })],
    listRule: OWN,
    viewRule: OWN,
    createRule: OWN,
    updateRule: `${OWN} && (@request.body.author:isset = false || @request.body.author = @request.auth.id)`,
    deleteRule: OWN,
  });
  posts = await su.collections.update(posts.id, {
    fields: [...posts.fields, f('related', 'relation', { collectionId: posts.id, maxSelect: 1 })],
  });
  comments = await su.collections.create({
    name: 'comments',
    fields: [f('body', 'text'), f('post', 'relation', { collectionId: posts.id, maxSelect: 1 }),
      f('author', 'relation', { collectionId: users.id, maxSelect: 1 })],
    listRule: OWN,
    viewRule: OWN,
    createRule: `${OWN} && post.author = @request.auth.id`,
    updateRule: OWN,
    deleteRule: OWN,
  });
  pA1 = await pbA.collection('posts').create({ title: 'alice one', author: A.id, editor: B.id, secret: 'set-by-client' });
  pA2 = await pbA.collection('posts').create({ title: 'alice two', author: A.id });
  pB1 = await pbB.collection('posts').create({ title: 'bob private title', author: B.id });
  assert.equal(pA1.secret, undefined, 'hidden fields are not returned to users');
  assert.equal((await su.collection('posts').getOne(pA1.id)).secret, '', 'nor written by them');
  await su.collection('posts').update(pB1.id, { secret: 'bob-s3cret' });
  await su.collection('posts').update(pA1.id, { related: pB1.id });
  cA = await pbA.collection('comments').create({ body: 'alice comment', post: pA1.id, author: A.id });
  // B may not comment on A's post (the create rule reads post.author)...
  await expectStatus(pbB.collection('comments').create({ body: 'x', post: pA1.id, author: B.id }), 400);
  // ...but a superuser may put one there
  cB = await su.collection('comments').create({ body: 'bob comment on alice', post: pA1.id, author: B.id });
});

test('BOLA: user A never reaches user B posts by id, filter, sort, expand or relation', async () => {
  const mine = [pA1.id, pA2.id].sort();
  // list, filter, sort
  assert.deepEqual((await pbA.collection('posts').getFullList()).map((x) => x.id).sort(), mine);
  for (const filter of [`id = "${pB1.id}"`, `author = "${B.id}"`, 'title ~ "bob"', `id = "${pB1.id}" || id != ""`, 'author.name = "Bob"']) {
    const items = (await pbA.collection('posts').getList(1, 50, { filter })).items.map((x) => x.id);
    assert.ok(!items.includes(pB1.id), filter);
    assert.ok(items.every((id) => mine.includes(id)), filter);
  }
  for (const sort of ['-title', 'title', '-id', 'author', 'related.title', 'related.author.name']) {
    const items = (await pbA.collection('posts').getList(1, 50, { sort })).items.map((x) => x.id).sort();
    assert.deepEqual(items, mine, sort);
  }
  // view, update, delete by id: 404, and nothing changed
  await expectStatus(pbA.collection('posts').getOne(pB1.id), 404);
  await expectStatus(pbA.collection('posts').update(pB1.id, { title: 'pwned' }), 404);
  await expectStatus(pbA.collection('posts').delete(pB1.id), 404);
  const still = await su.collection('posts').getOne(pB1.id);
  assert.equal(still.title, 'bob private title');
  // the same answer as a missing record: nothing tells that it exists
  const missing = await expectStatus(pbA.collection('posts').getOne('nosuchrecord123'), 404);
  const hidden = await expectStatus(pbA.collection('posts').getOne(pB1.id), 404);
  assert.deepEqual(hidden.response, missing.response);

  // relation paths in filters only see what A could list
  assert.equal((await su.collection('posts').getList(1, 10, { filter: 'related.title ~ "bob"' })).totalItems, 1);
  assert.equal((await pbA.collection('posts').getList(1, 10, { filter: 'related.title ~ "bob"' })).totalItems, 0);
  // back-relations too
  assert.equal((await su.collection('posts').getList(1, 10, { filter: 'comments_via_post.body ?= "bob comment on alice"' })).totalItems, 1);
  assert.equal((await pbA.collection('posts').getList(1, 10, { filter: 'comments_via_post.body ?= "bob comment on alice"' })).totalItems, 0);
  assert.equal((await pbA.collection('posts').getList(1, 10, { filter: 'comments_via_post.body ?= "alice comment"' })).totalItems, 1);

  // expand follows the target collection's viewRule
  const ex = await pbA.collection('posts').getOne(pA1.id, { expand: 'related,editor,author,comments_via_post' });
  assert.equal(ex.expand.related, undefined, 'B\'s post is not expanded');
  assert.equal(ex.expand.editor, undefined, 'B\'s user record is not expanded');
  assert.equal(ex.expand.author.id, A.id);
  assert.equal(ex.expand.author.email, 'alice@example.com');
  assert.deepEqual(ex.expand.comments_via_post.map((x) => x.id), [cA.id]);
  const exl = await pbA.collection('posts').getList(1, 10, { expand: 'related.author,comments_via_post.author', filter: `id = "${pA1.id}"` });
  assert.equal(exl.items[0].expand?.related, undefined);
  assert.deepEqual(exl.items[0].expand.comments_via_post.map((x) => x.id), [cA.id]);
  const suEx = await su.collection('posts').getOne(pA1.id, { expand: 'related,editor,comments_via_post' });
  assert.equal(suEx.expand.related.id, pB1.id, 'control: a superuser sees the expansion');
  assert.equal(suEx.expand.editor.id, B.id);
  assert.equal(suEx.expand.comments_via_post.length, 2);

  // auth answers expand as the signed-in record sees things
  const refreshed = await pbA.collection('users').authRefresh({ expand: 'posts_via_author,posts_via_editor' });
  assert.deepEqual(refreshed.record.expand.posts_via_author.map((x) => x.id).sort(), mine);
  const signedB = await client(srv.url).collection('users').authWithPassword('bob@example.com', PW_B, { expand: 'posts_via_author,posts_via_editor' });
  assert.deepEqual(signedB.record.expand.posts_via_author.map((x) => x.id), [pB1.id]);
  assert.equal(signedB.record.expand.posts_via_editor, undefined, 'B is editor of A\'s post, which B cannot view');

  // comments: B's comment on A's post stays B's
  assert.deepEqual((await pbA.collection('comments').getFullList()).map((x) => x.id), [cA.id]);
  await expectStatus(pbA.collection('comments').getOne(cB.id), 404);
  await expectStatus(pbA.collection('comments').update(cB.id, { body: 'x' }), 404);
  await expectStatus(pbA.collection('comments').delete(cB.id), 404);

  // hidden fields: not returned, not filterable, not sortable by users
  assert.equal((await pbB.collection('posts').getOne(pB1.id)).secret, undefined);
  assert.equal((await su.collection('posts').getOne(pB1.id)).secret, 'bob-s3cret');
  await expectStatus(pbB.collection('posts').getList(1, 10, { filter: 'secret = "bob-s3cret"' }), 400);
  await expectStatus(pbB.collection('posts').getList(1, 10, { sort: 'secret' }), 400);
  await expectStatus(pbA.collection('posts').getList(1, 10, { filter: 'related.secret = "bob-s3cret"' }), 400);

  // @request and @collection are for rules and superusers
  let e = await expectStatus(pbA.collection('posts').getList(1, 10, { filter: '@request.auth.id != ""' }), 403);
  assert.match(e.response.message, /@request/);
  e = await expectStatus(pbA.collection('posts').getList(1, 10, { filter: `@collection.posts.author = "${B.id}"` }), 403);
  assert.match(e.response.message, /@collection/);
  await expectStatus(pbA.collection('posts').getList(1, 10, { sort: '@request.auth.id' }), 403);
  assert.equal((await su.collection('posts').getList(1, 10, { filter: `@collection.comments.post ?= id` })).totalItems, 1);

  // guests: nothing listed, locked collections 403
  const guest = client(srv.url);
  assert.equal((await guest.collection('posts').getList()).totalItems, 0);
  await expectStatus(guest.collection('posts').getOne(pA1.id), 404);
  await expectStatus(guest.collection('posts').create({ title: 'anon', author: '' }), 400);
  await expectStatus(guest.collection('_superusers').getList(), 403);
  await expectStatus(pbA.collection('_superusers').getList(), 403);
  await expectStatus(pbA.collection('_superusers').create({ email: 'x@example.com', password: 'whatever12', passwordConfirm: 'whatever12' }), 403);
  // A owns its records and can do everything with them
  const upd = await pbA.collection('posts').update(pA2.id, { title: 'alice two edited' });
  assert.equal(upd.title, 'alice two edited');
  await pbA.collection('posts').delete(pA2.id);
  await expectStatus(su.collection('posts').getOne(pA2.id), 404);
});

test('mass assignment: clients cannot set tokenKey, verified, emails or other users\' ownership', async () => {
  const guest = client(srv.url);
  // verified at sign-up
  let e = await expectStatus(guest.collection('users').create({ email: 'v@example.com', password: 'passw0rd-v', passwordConfirm: 'passw0rd-v', verified: true }), 400);
  assert.ok(e.response.data.verified);
  // a chosen tokenKey at sign-up is ignored: a token signed with it is refused
  const chosen = 'K'.repeat(50);
  const m = await guest.collection('users').create({ email: 'm@example.com', password: 'passw0rd-m', passwordConfirm: 'passw0rd-m', tokenKey: chosen });
  const pbM = client(srv.url);
  await pbM.collection('users').authWithPassword('m@example.com', 'passw0rd-m');
  const key = chosen + collectionSecret(dir, users.id);
  const forged = craft(HS256, claims(users.id, m.id, now() + 3600), { key });
  assert.equal((await raw('POST', '/api/collections/users/auth-refresh', forged)).status, 401);
  assert.equal((await raw('POST', '/api/collections/users/auth-refresh', pbM.authStore.token)).status, 200);
  // ... and so is a tokenKey sent in an update: the old token keeps working
  const up = await pbM.collection('users').update(m.id, { tokenKey: chosen, name: 'still me' });
  assert.equal(up.name, 'still me');
  assert.equal(up.tokenKey, undefined);
  assert.equal((await raw('POST', '/api/collections/users/auth-refresh', pbM.authStore.token)).status, 200);
  assert.equal((await raw('POST', '/api/collections/users/auth-refresh', forged)).status, 401);
  // verified and email only by superusers (or managers)
  e = await expectStatus(pbM.collection('users').update(m.id, { verified: true }), 400);
  assert.ok(e.response.data.verified);
  e = await expectStatus(pbM.collection('users').update(m.id, { email: 'other@example.com' }), 400);
  assert.ok(e.response.data.email);
  const fresh = await su.collection('users').getOne(m.id);
  assert.equal(fresh.verified, false);
  assert.equal(fresh.email, 'm@example.com');
  // a password change needs the old password
  e = await expectStatus(pbM.collection('users').update(m.id, { password: 'passw0rd-new', passwordConfirm: 'passw0rd-new' }), 400);
  assert.ok(e.response.data.oldPassword);
  e = await expectStatus(pbM.collection('users').update(m.id, { password: 'passw0rd-new', passwordConfirm: 'passw0rd-new', oldPassword: 'not-the-one' }), 400);
  assert.equal(e.response.data.oldPassword.code, 'validation_invalid_old_password');
  await pbM.collection('users').authWithPassword('m@example.com', 'passw0rd-m'); // unchanged
  // ownership: A cannot create for B, nor hand its post to B
  e = await expectStatus(pbA.collection('posts').create({ title: 'for bob', author: B.id }), 400);
  assert.equal(e.response.message, 'Failed to create record.');
  await expectStatus(pbA.collection('posts').update(pA1.id, { author: B.id }), 404);
  assert.equal((await su.collection('posts').getOne(pA1.id)).author, A.id);
  await expectStatus(pbA.collection('comments').create({ body: 'x', post: pB1.id, author: A.id }), 400);
  // ids cannot be changed, collectionId/collectionName/expand in a body are ignored
  e = await expectStatus(pbA.collection('posts').update(pA1.id, { id: pB1.id }), 400);
  assert.equal(e.response.data.id.code, 'validation_pk_change');
  const same = await pbA.collection('posts').update(pA1.id, { collectionId: comments.id, collectionName: 'comments', expand: { x: 1 } });
  assert.equal(same.collectionId, posts.id);
  assert.equal(same.collectionName, 'posts');
  assert.equal(same.expand, undefined);
  // an auth record id taken in another auth collection cannot be reused (rules compare ids)
  members = await su.collections.create({ name: 'members', type: 'auth', fields: [f('name', 'text')], listRule: '', viewRule: '', createRule: '' });
  e = await expectStatus(guest.collection('members').create({ id: A.id, email: 'clone@example.com', password: 'passw0rd-c', passwordConfirm: 'passw0rd-c' }), 400);
  assert.equal(e.response.data.id.code, 'validation_not_unique');
  // superusers may set verified
  assert.equal((await su.collection('users').update(m.id, { verified: true })).verified, true);
});

test('token tampering gives guest behaviour, never a 401 by itself', async () => {
  // give A a known tokenKey (a superuser may) so that the test can sign like the server
  const tk = 'T'.repeat(20) + 'k'.repeat(30);
  await su.collection('users').update(A.id, { tokenKey: tk });
  await pbA.collection('users').authWithPassword('alice@example.com', PW_A);
  const good = pbA.authStore.token;
  const key = tk + collectionSecret(dir, users.id);
  const { claims: c, sig } = decode(good);
  // control: the test's signing reproduces the server's token byte for byte
  assert.equal(craft(HS256, c, { key }), good);
  const mine = [pA1.id];
  assert.deepEqual(await visiblePosts(good), mine);
  assert.deepEqual(await visiblePosts(craft(HS256, claims(users.id, A.id, now() + 60), { key })), mine, 'control: a fresh forged token works');
  assert.deepEqual(await visiblePosts(undefined), []);

  const bad = {
    'changed payload (another id) under the old signature': craft(HS256, { ...c, id: B.id }, { sig }),
    'changed payload (later exp) under the old signature': craft(HS256, { ...c, exp: c.exp + 1000 }, { sig }),
    'alg none, empty signature': craft({ alg: 'none', typ: 'JWT' }, c, { sig: '' }),
    'alg none, valid HS256 signature': craft({ alg: 'none', typ: 'JWT' }, c, { key }),
    'RS256 header, old signature': craft({ alg: 'RS256', typ: 'JWT' }, c, { sig }),
    'RS256 header, HMAC with the real key (key confusion)': craft({ alg: 'RS256', typ: 'JWT' }, c, { key }),
    'HS256 with a wrong key': craft(HS256, c, { key: 'wrong' + key }),
    'HS256 with the collection secret alone': craft(HS256, c, { key: collectionSecret(dir, users.id) }),
    expired: craft(HS256, claims(users.id, A.id, now() - 5), { key }),
    'another collection id, same record id': craft(HS256, claims(members.id, A.id, now() + 60), { key }),
    'another collection signed with its secret': craft(HS256, claims(members.id, A.id, now() + 60), { key: tk + collectionSecret(dir, members.id) }),
    'wrong type': craft(HS256, { ...claims(users.id, A.id, now() + 60), type: 'file' }, { key }),
    garbage: 'not.a.token',
  };
  for (const [what, token] of Object.entries(bad)) {
    assert.deepEqual(await visiblePosts(token), [], what);
    assert.deepEqual(await visiblePosts(`Bearer ${token}`), [], what);
    // endpoints that need an auth record answer 401 as for no token at all
    assert.equal((await raw('POST', '/api/collections/users/auth-refresh', token)).status, 401, what);
  }

  // a token of another collection's record acts as that record only
  const mem = await client(srv.url).collection('members').create({ email: 'mem@example.com', password: 'passw0rd-mem', passwordConfirm: 'passw0rd-mem' });
  const pbMem = client(srv.url);
  await pbMem.collection('members').authWithPassword('mem@example.com', 'passw0rd-mem');
  assert.deepEqual(await visiblePosts(pbMem.authStore.token), []);
  assert.equal((await raw('POST', '/api/collections/users/auth-refresh', pbMem.authStore.token)).status, 403);
  assert.equal(mem.email, undefined);

  // after a password change, tokens issued before stop working
  const before = pbA.authStore.token;
  const changed = await pbA.collection('users').update(A.id, { oldPassword: PW_A, password: 'passw0rd-alice-2', passwordConfirm: 'passw0rd-alice-2' });
  assert.equal(changed.id, A.id);
  assert.deepEqual(await visiblePosts(before), []);
  await expectStatus(client(srv.url).collection('users').authWithPassword('alice@example.com', PW_A), 400);
  await pbA.collection('users').authWithPassword('alice@example.com', 'passw0rd-alice-2');
  assert.deepEqual(await visiblePosts(pbA.authStore.token), mine);
  // an email change (by a superuser) rotates the tokenKey too
  const beforeEmail = pbA.authStore.token;
  await su.collection('users').update(A.id, { email: 'alice2@example.com' });
  assert.deepEqual(await visiblePosts(beforeEmail), []);
  await pbA.collection('users').authWithPassword('alice2@example.com', 'passw0rd-alice-2');
  assert.deepEqual(await visiblePosts(pbA.authStore.token), mine);
});

test('emails are shown to the owner, superusers, or when emailVisibility is set', async () => {
  const hid = await su.collection('members').create({ email: 'hid@example.com', emailVisibility: false, password: 'passw0rd-h', passwordConfirm: 'passw0rd-h' });
  const vis = await su.collection('members').create({ email: 'vis@example.com', emailVisibility: true, password: 'passw0rd-v', passwordConfirm: 'passw0rd-v', verified: true });
  const guest = client(srv.url);
  const byId = Object.fromEntries((await guest.collection('members').getFullList()).map((x) => [x.id, x]));
  assert.equal(byId[hid.id].email, undefined);
  assert.equal(byId[vis.id].email, 'vis@example.com');
  assert.equal((await guest.collection('members').getOne(hid.id)).email, undefined);
  // filtering by a hidden email finds nothing; a visible one is found
  assert.equal((await guest.collection('members').getList(1, 10, { filter: 'email = "hid@example.com"' })).totalItems, 0);
  assert.equal((await guest.collection('members').getList(1, 10, { filter: 'email = "vis@example.com"' })).totalItems, 1);
  const pbH = client(srv.url);
  await pbH.collection('members').authWithPassword('hid@example.com', 'passw0rd-h');
  assert.equal((await pbH.collection('members').getOne(hid.id)).email, 'hid@example.com');
  assert.equal((await su.collection('members').getOne(hid.id)).email, 'hid@example.com');
  // a manager sees it (manageRule)
  await su.collections.update(members.id, { manageRule: `@request.auth.id = "${vis.id}"` });
  const pbV = client(srv.url);
  await pbV.collection('members').authWithPassword('vis@example.com', 'passw0rd-v');
  assert.equal((await pbV.collection('members').getOne(hid.id)).email, 'hid@example.com');
  // ... and may verify the record and change its email without the old password, unlike H
  await expectStatus(pbH.collection('members').update(hid.id, { verified: true }), 403); // updateRule null
  await su.collections.update(members.id, { updateRule: `id = @request.auth.id || @request.auth.id = "${vis.id}"` });
  await expectStatus(pbH.collection('members').update(hid.id, { verified: true }), 400);
  const managed = await pbV.collection('members').update(hid.id, { verified: true, password: 'passw0rd-h2', passwordConfirm: 'passw0rd-h2' });
  assert.equal(managed.verified, true);
  await expectStatus(client(srv.url).collection('members').authWithPassword('hid@example.com', 'passw0rd-h'), 400);
  await client(srv.url).collection('members').authWithPassword('hid@example.com', 'passw0rd-h2');
});

test('authRule is checked at sign-in and refresh', async () => {
  await su.collection('members').create({ email: 'unver@example.com', password: 'passw0rd-u', passwordConfirm: 'passw0rd-u' });
  const pbU = client(srv.url);
  await pbU.collection('members').authWithPassword('unver@example.com', 'passw0rd-u');
  await su.collections.update(members.id, { authRule: 'verified = true' });
  const e = await expectStatus(client(srv.url).collection('members').authWithPassword('unver@example.com', 'passw0rd-u'), 403);
  assert.equal(e.response.message, "The request doesn't satisfy the collection requirements to authenticate.");
  await expectStatus(pbU.collection('members').authRefresh(), 403);
  await client(srv.url).collection('members').authWithPassword('vis@example.com', 'passw0rd-v');
  // a wrong password still says only "Failed to authenticate."
  await expectStatus(client(srv.url).collection('members').authWithPassword('unver@example.com', 'nope-nope-nope'), 400);
  await su.collections.update(members.id, { authRule: null });
  await expectStatus(client(srv.url).collection('members').authWithPassword('vis@example.com', 'passw0rd-v'), 403);
  // @request.context is "password" at sign-in and "default" at refresh
  await su.collections.update(members.id, { authRule: '@request.context = "password"' });
  const pbU2 = client(srv.url);
  await pbU2.collection('members').authWithPassword('unver@example.com', 'passw0rd-u');
  await expectStatus(pbU2.collection('members').authRefresh(), 403);
  await su.collections.update(members.id, { authRule: '' });
  await client(srv.url).collection('members').authWithPassword('unver@example.com', 'passw0rd-u');
  await pbU2.collection('members').authRefresh();
});

test('@request.body, @request.query, @request.headers and @request.method in rules', async () => {
  const labels = await su.collections.create({ name: 'labels', fields: [f('name', 'text')], viewRule: '@request.context = "expand"' });
  const label = await su.collection('labels').create({ name: 'only through expand' });
  const notes = await su.collections.create({
    name: 'notes',
    fields: [f('body', 'text'), f('level', 'number'), f('tags', 'select', { values: ['a', 'b', 'c'], maxSelect: 3 }),
      f('label', 'relation', { collectionId: labels.id, maxSelect: 1 })],
    listRule: '@request.query.k = "open" || @request.headers.x_key = "let-me-in"',
    viewRule: '@request.method = "GET"',
    createRule: '@request.body.level:isset = false && @request.body.tags:length < 2',
    updateRule: '@request.body.level:changed = false',
    deleteRule: null,
  });
  const guest = client(srv.url);
  const n1 = await guest.collection('notes').create({ body: 'one', tags: ['a'], label: label.id });
  // @request.context is "expand" while an expansion checks the target's viewRule
  await expectStatus(guest.collection('labels').getOne(label.id), 404);
  assert.equal((await guest.collection('notes').getOne(n1.id, { expand: 'label' })).expand.label.name, 'only through expand');
  await expectStatus(guest.collection('notes').create({ body: 'two', level: 3 }), 400);
  await expectStatus(guest.collection('notes').create({ body: 'two', tags: ['a', 'b'] }), 400);
  await expectStatus(guest.collection('notes').create({ body: 'two', 'level+': 3 }), 400); // a modifier is still the field
  assert.equal((await guest.collection('notes').getList()).totalItems, 0);
  assert.equal((await guest.collection('notes').getList(1, 10, { query: { k: 'open' } })).totalItems, 1);
  assert.equal((await guest.collection('notes').getList(1, 10, { headers: { 'X-Key': 'let-me-in' } })).totalItems, 1);
  assert.equal((await guest.collection('notes').getOne(n1.id)).body, 'one');
  await expectStatus(guest.collection('notes').update(n1.id, { level: 5 }), 404);
  await expectStatus(guest.collection('notes').update(n1.id, { 'level+': 5 }), 404);
  assert.equal((await guest.collection('notes').update(n1.id, { body: 'edited', level: 0 })).body, 'edited');
  await expectStatus(guest.collection('notes').delete(n1.id), 403);
  await su.collections.delete(notes.id);
  await su.collections.delete(labels.id);
});

test('rate limits answer 429 with Retry-After per route class', async () => {
  const s = await start({ args: ['--ratelimit', 'auth=2/60s,create=3/60s'] });
  try {
    const body = JSON.stringify({ identity: 'nobody@example.com', password: 'whatever-1' });
    const post = (path, b) => fetch(`${s.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: b });
    for (let i = 0; i < 2; i++) assert.equal((await post('/api/collections/users/auth-with-password', body)).status, 400);
    const r = await post('/api/collections/users/auth-with-password', body);
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    assert.deepEqual(await r.json(), { data: {}, message: 'Too Many Requests.', status: 429 });
    // another class is counted apart
    for (let i = 0; i < 3; i++) {
      const c = await post('/api/collections/users/records', JSON.stringify({ email: `r${i}@example.com`, password: 'passw0rd-r', passwordConfirm: 'passw0rd-r' }));
      assert.equal(c.status, 200);
    }
    assert.equal((await post('/api/collections/users/records', JSON.stringify({ email: 'r9@example.com' }))).status, 429);
    assert.equal((await fetch(`${s.url}/api/collections/users/records`)).status, 200);
  } finally {
    await s.stop();
  }
});

test('a login flood does not starve other requests', async () => {
  const body = JSON.stringify({ identity: 'alice2@example.com', password: 'wrong-password-x' });
  let pending = 0;
  const flood = Array.from({ length: 16 }, () => {
    pending++;
    return fetch(`${srv.url}/api/collections/users/auth-with-password`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body })
      .then((r) => { pending--; return r.status; });
  });
  await new Promise((r) => setTimeout(r, 50));
  const h = await fetch(`${srv.url}/api/collections/posts/records`);
  const stillQueued = pending;
  assert.equal(h.status, 200);
  const statuses = await Promise.all(flood);
  for (const st of statuses) assert.ok([400, 503].includes(st), String(st));
  // 16 password checks at most 2 at a time take many hash times; the list did not wait for them
  assert.ok(stillQueued > 0, 'the list answered only after every login');
});
