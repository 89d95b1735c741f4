// OAuth2 / OpenID Connect sign-in and impersonation through the real `pocketbase` SDK, against a
// real OpenID provider (the `oidc-provider` package) started here on 127.0.0.1 with its own
// ephemeral port. The test plays the browser: it follows the provider's redirects, signs in
// and consents on the provider's development pages, and hands the code to authWithOAuth2Code.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';
import { EventSource } from 'eventsource';
import { client, expectStatus, startWithSuperuser } from './lib/pb.mjs';

globalThis.EventSource = EventSource; // the SDK's realtime client (authWithOAuth2)

const REDIRECT = 'http://127.0.0.1:9/oauth2-callback';
const CLIENT_ID = 'tandem-app';
const CLIENT_SECRET = 'tandem-app-secret-0123456789';

let srv, su, idp, issuer, jwksPeer, forgedJwksURL;

// accounts of the provider: id -> claims
const accounts = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Liddell' },
  mallory: { email: 'victim@example.com', email_verified: false, name: 'Mallory' },
  victim: { email: 'victim@example.com', email_verified: true, name: 'The Victim' },
  bob: { email: 'bob@example.com', email_verified: true, name: 'Bob' },
};

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

before(async () => {
  ({ srv, pb: su } = await startWithSuperuser({ env: { TANDEM_LOG_LEVEL: process.env.OAUTH2_DEBUG ? 'info' : 'warn' } }));
  const http = createServer();
  const port = await listen(http);
  issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT, `${srv.url}/api/oauth2-redirect`],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'] },
    findAccount: async (_ctx, id) => accounts[id] && {
      accountId: id,
      claims: async () => ({ sub: id, preferred_username: id, ...accounts[id] }),
    },
    features: { devInteractions: { enabled: true } },
    // PKCE stays optional, as at many providers: the provider without it (oidc3) shows what
    // the nonce alone protects
    pkce: { required: () => false },
    cookies: { keys: ['test-cookie-key'] },
  });
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider:', err));
  http.on('request', provider.callback());
  idp = http;

  // a key set of the provider's key ids but other keys: id tokens then look forged
  const real = await (await fetch(`${issuer}/jwks`)).json();
  const keys = real.keys.map((k) => {
    const { publicKey } = generateKeyPairSync(k.kty === 'EC' ? 'ec' : 'rsa',
      k.kty === 'EC' ? { namedCurve: 'P-256' } : { modulusLength: 2048 });
    return { ...publicKey.export({ format: 'jwk' }), kid: k.kid, use: 'sig', alg: k.alg };
  });
  jwksPeer = createServer((_req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ keys }));
  });
  forgedJwksURL = `http://127.0.0.1:${await listen(jwksPeer)}/jwks`;

  const disc = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  const explicit = {
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    authURL: disc.authorization_endpoint,
    tokenURL: disc.token_endpoint,
    userInfoURL: disc.userinfo_endpoint,
  };
  await su.collections.update('users', {
    oauth2: {
      enabled: true,
      mappedFields: { id: '', name: 'name', username: '', avatarURL: '' },
      providers: [
        // discovered from the issuer
        { name: 'oidc', displayName: 'Local IdP', clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, extra: { issuer } },
        // the same provider expected under another issuer
        { name: 'oidc2', ...explicit, extra: { jwksURL: disc.jwks_uri, issuers: ['https://idp.example.com'] } },
        // without PKCE (the nonce still binds the code verifier), or checked against other keys
        { name: 'oidc3', ...explicit, pkce: false, extra: { jwksURL: disc.jwks_uri, issuers: [issuer] } },
      ],
    },
  });
});

after(async () => {
  if (process.env.OAUTH2_DEBUG) console.error(srv?.stderr());
  await srv?.stop();
  idp?.closeAllConnections?.();
  await new Promise((r) => (idp ? idp.close(r) : r()));
  await new Promise((r) => (jwksPeer ? jwksPeer.close(r) : r()));
});

// The browser: follows redirects by hand with a cookie jar, answers the provider's login and
// consent pages, and returns the URL of the final redirect to `redirect` (its query by default).
async function browse(authURL, account, { redirect = REDIRECT, full = false } = {}) {
  const jar = new Map();
  const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  const keep = (r) => {
    for (const c of r.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      if (!value || attrs.some((a) => /expires=Thu, 01 Jan 1970/i.test(a))) jar.delete(name);
      else jar.set(name, value);
    }
  };
  let url = full ? authURL : authURL + encodeURIComponent(redirect);
  let method = 'GET';
  let body;
  for (let hop = 0; hop < 20; hop++) {
    const r = await fetch(url, {
      method,
      redirect: 'manual',
      headers: { cookie: cookieHeader(), ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      body,
    });
    keep(r);
    method = 'GET';
    body = undefined;
    if (r.status >= 300 && r.status < 400) {
      const next = new URL(r.headers.get('location'), url);
      if (next.href.startsWith(redirect)) return full ? next.href : Object.fromEntries(next.searchParams);
      url = next.href;
      continue;
    }
    const html = await r.text();
    assert.equal(r.status, 200, html);
    const action = /action="([^"]+)"/.exec(html)?.[1];
    assert.ok(action, `no form on ${url}: ${html.slice(0, 300)}`);
    url = new URL(action.replace(/&amp;/g, '&'), url).href;
    method = 'POST';
    body = /name="login"/.test(html)
      ? new URLSearchParams({ prompt: 'login', login: account, password: 'any' }).toString()
      : new URLSearchParams({ prompt: 'consent' }).toString();
  }
  throw new Error('too many redirects');
}

async function provider(pb, name) {
  const methods = await pb.collection('users').listAuthMethods();
  const p = methods.oauth2.providers.find((x) => x.name === name);
  assert.ok(p, `provider ${name} listed: ${JSON.stringify(methods.oauth2)}`);
  return p;
}

async function signIn(account, { name = 'oidc', pb = client(srv.url), createData, verifier } = {}) {
  const p = await provider(pb, name);
  const back = await browse(p.authURL, account);
  assert.equal(back.state, p.state, 'the provider returns the state');
  assert.ok(back.code, `a code: ${JSON.stringify(back)}`);
  const auth = await pb.collection('users').authWithOAuth2Code(name, back.code, verifier ?? p.codeVerifier, REDIRECT, createData);
  return { pb, auth };
}

test('auth-methods lists the enabled providers with state, PKCE and a nonce in the URL', async () => {
  const m = await client(srv.url).collection('users').listAuthMethods();
  assert.equal(m.oauth2.enabled, true);
  assert.deepEqual(m.oauth2.providers.map((p) => p.name).sort(), ['oidc', 'oidc2', 'oidc3']);
  const p = m.oauth2.providers.find((x) => x.name === 'oidc');
  assert.equal(p.displayName, 'Local IdP');
  assert.equal(p.codeChallengeMethod, 'S256');
  assert.ok(p.authURL.startsWith(`${issuer}/auth?`), p.authURL);
  assert.ok(p.authURL.endsWith('&redirect_uri='));
  const q = new URL(p.authURL).searchParams;
  assert.equal(q.get('client_id'), CLIENT_ID);
  assert.equal(q.get('state'), p.state);
  assert.equal(q.get('code_challenge'), p.codeChallenge);
  assert.ok(q.get('nonce')?.length >= 32);
  assert.match(q.get('scope'), /openid/);
  const noPkce = m.oauth2.providers.find((x) => x.name === 'oidc3');
  assert.equal(noPkce.codeChallenge, '');
  assert.equal(new URL(noPkce.authURL).searchParams.get('code_challenge'), null);
  // a collection without OAuth2 says so
  const su2 = await su.collections.create({ name: 'members', type: 'auth', fields: [] });
  const none = await client(srv.url).collection(su2.name).listAuthMethods();
  assert.equal(none.oauth2.enabled, false);
  assert.deepEqual(none.oauth2.providers, []);
});

test('the code flow with PKCE signs a new user up, then signs the same user in', async () => {
  const { pb, auth } = await signIn('alice');
  assert.equal(auth.meta.isNew, true);
  assert.equal(auth.meta.id, 'alice');
  assert.equal(auth.meta.email, 'alice@example.com');
  assert.ok(auth.meta.accessToken);
  assert.equal(auth.record.email, 'alice@example.com');
  assert.equal(auth.record.verified, true);
  assert.equal(auth.record.name, 'Alice Liddell', 'mappedFields.name');
  assert.ok(pb.authStore.isValid);
  // the token works and can be refreshed like any sign-in
  const me = await pb.collection('users').getOne(auth.record.id);
  assert.equal(me.email, 'alice@example.com');
  await pb.collection('users').authRefresh();
  // the link is listed for its owner
  const links = await pb.collection('users').listExternalAuths(auth.record.id);
  assert.equal(links.length, 1);
  assert.equal(links[0].provider, 'oidc');
  assert.equal(links[0].providerId, 'alice');
  // a second sign-in finds the same record through the link
  const again = await signIn('alice');
  assert.equal(again.auth.meta.isNew, false);
  assert.equal(again.auth.record.id, auth.record.id);
  const users = await su.collection('users').getFullList({ filter: 'email = "alice@example.com"' });
  assert.equal(users.length, 1);
});

test('a code is single-use and a wrong verifier is refused by the provider', async () => {
  const pb = client(srv.url);
  const p = await provider(pb, 'oidc');
  const back = await browse(p.authURL, 'bob');
  const e1 = await expectStatus(pb.collection('users').authWithOAuth2Code('oidc', back.code, 'x'.repeat(43), REDIRECT), 400);
  assert.equal(e1.response.message, 'Failed to fetch OAuth2 token.');
  const ok = await pb.collection('users').authWithOAuth2Code('oidc', back.code, p.codeVerifier, REDIRECT).catch((e) => e);
  // the provider revoked the code after the failed attempt or it is used now; either way it
  // cannot be used twice
  const e2 = await expectStatus(pb.collection('users').authWithOAuth2Code('oidc', back.code, p.codeVerifier, REDIRECT), 400);
  assert.equal(e2.response.message, 'Failed to fetch OAuth2 token.');
  assert.ok(ok.status === 400 || ok.record?.email === 'bob@example.com');
});

test('an id token from another issuer is refused and nothing is created', async () => {
  const before = await su.collection('users').getFullList();
  const pb = client(srv.url);
  const p = await provider(pb, 'oidc2');
  const back = await browse(p.authURL, 'bob');
  const e = await expectStatus(pb.collection('users').authWithOAuth2Code('oidc2', back.code, p.codeVerifier, REDIRECT), 400);
  assert.equal(e.response.message, 'Failed to fetch OAuth2 user.');
  assert.equal((await su.collection('users').getFullList()).length, before.length);
  assert.equal(pb.authStore.isValid, false);
});

test('an id token whose nonce belongs to another sign-in is refused', async () => {
  const pb = client(srv.url);
  const p = await provider(pb, 'oidc3'); // no PKCE: only the nonce binds the verifier
  const back = await browse(p.authURL, 'bob');
  assert.ok(back.code, JSON.stringify(back));
  const other = await provider(pb, 'oidc3');
  assert.notEqual(other.codeVerifier, p.codeVerifier);
  const e = await expectStatus(pb.collection('users').authWithOAuth2Code('oidc3', back.code, other.codeVerifier, REDIRECT), 400);
  assert.equal(e.response.message, 'Failed to fetch OAuth2 user.', JSON.stringify(e.response));
  assert.equal(e.response.message, 'Failed to fetch OAuth2 user.');
  // the right verifier, with a fresh code, works
  const p2 = await provider(pb, 'oidc3');
  const back2 = await browse(p2.authURL, 'bob');
  const ok = await pb.collection('users').authWithOAuth2Code('oidc3', back2.code, p2.codeVerifier, REDIRECT);
  assert.equal(ok.record.email, 'bob@example.com');
});

test('an id token that the provider keys do not sign is refused', async () => {
  const col = await su.collections.getOne('users');
  const providers = col.oauth2.providers.map((p) =>
    p.name === 'oidc3' ? { ...p, extra: { ...p.extra, jwksURL: forgedJwksURL } } : p);
  await su.collections.update('users', { oauth2: { ...col.oauth2, providers } });
  try {
    const pb = client(srv.url);
    const p = await provider(pb, 'oidc3');
    const back = await browse(p.authURL, 'bob');
    const e = await expectStatus(pb.collection('users').authWithOAuth2Code('oidc3', back.code, p.codeVerifier, REDIRECT), 400);
    assert.equal(e.response.message, 'Failed to fetch OAuth2 user.');
  } finally {
    await su.collections.update('users', { oauth2: col.oauth2 });
  }
});

test('linking by email: only a verified provider email finds an existing account', async () => {
  const pw = 'victim-password-1';
  const victim = await su.collection('users').create({ email: 'victim@example.com', password: pw, passwordConfirm: pw, verified: true });
  // the provider does not vouch for mallory's address: no link to the victim's account
  const e = await expectStatus(signIn('mallory'), 400);
  assert.equal(e.response.message, 'Failed to authenticate.');
  const vpb = client(srv.url);
  await vpb.collection('users').authWithPassword('victim@example.com', pw);
  assert.equal((await vpb.collection('users').listExternalAuths(victim.id)).length, 0);
  // a verified address links the existing account (and keeps its password)
  const { auth } = await signIn('victim');
  assert.equal(auth.record.id, victim.id);
  assert.equal(auth.meta.isNew, false);
  await client(srv.url).collection('users').authWithPassword('victim@example.com', pw);
});

test('an unverified account found by email loses its password when its owner signs in', async () => {
  const pw = 'squatter-password-1';
  const squat = await client(srv.url).collection('users').create({ email: 'carol@example.com', password: pw, passwordConfirm: pw });
  accounts.carol = { email: 'carol@example.com', email_verified: true, name: 'Carol' };
  const { auth } = await signIn('carol');
  assert.equal(auth.record.id, squat.id);
  assert.equal(auth.record.verified, true);
  await expectStatus(client(srv.url).collection('users').authWithPassword('carol@example.com', pw), 400);
});

test('createData with a password: checked like a sign-up, then usable', async () => {
  accounts.frank = { email: 'frank@example.com', email_verified: true, name: 'Frank' };
  const e = await expectStatus(signIn('frank', { createData: { password: 'short', passwordConfirm: 'short' } }), 400);
  assert.equal(e.response.data.password.code, 'validation_min_text_constraint');
  const e2 = await expectStatus(signIn('frank', { createData: { password: 'long-enough-1', passwordConfirm: 'other' } }), 400);
  assert.equal(e2.response.data.passwordConfirm.code, 'validation_values_mismatch');
  assert.equal((await su.collection('users').getFullList({ filter: 'email = "frank@example.com"' })).length, 0);
  await signIn('frank', { createData: { password: 'long-enough-1', passwordConfirm: 'long-enough-1' } });
  await client(srv.url).collection('users').authWithPassword('frank@example.com', 'long-enough-1');
});

test('createData fills the new record; fields only managers may set are ignored', async () => {
  accounts.dave = { email: 'dave@example.com', email_verified: true, name: 'Dave' };
  const { auth } = await signIn('dave', { createData: { name: 'Chosen Name', emailVisibility: true, verified: false } });
  assert.equal(auth.record.name, 'Chosen Name');
  assert.equal(auth.record.emailVisibility, true);
  assert.equal(auth.record.verified, true);
});

test('mappedFields: the provider id and username go to the fields named', async () => {
  const users = await su.collections.getOne('users');
  await su.collections.create({
    name: 'people',
    type: 'auth',
    createRule: '',
    fields: [{ name: 'nick', type: 'text' }, { name: 'extId', type: 'text' }],
    oauth2: { ...users.oauth2, mappedFields: { id: 'extId', username: 'nick', name: '', avatarURL: '' } },
  });
  const pb = client(srv.url);
  const m = await pb.collection('people').listAuthMethods();
  const p = m.oauth2.providers.find((x) => x.name === 'oidc');
  const back = await browse(p.authURL, 'bob');
  const auth = await pb.collection('people').authWithOAuth2Code('oidc', back.code, p.codeVerifier, REDIRECT);
  assert.equal(auth.record.collectionName, 'people');
  assert.equal(auth.record.extId, 'bob');
  assert.equal(auth.record.nick, 'bob', 'preferred_username');
  // the link names its own collection; the users link of bob is another one
  const links = await pb.collection('people').listExternalAuths(auth.record.id);
  assert.equal(links.length, 1);
  assert.equal(links[0].collectionRef, auth.record.collectionId);
});

test('unlink: the owner deletes a link, the next sign-in links again', async () => {
  const { pb, auth } = await signIn('alice');
  const links = await pb.collection('users').listExternalAuths(auth.record.id);
  assert.equal(links.length, 1);
  // nobody else sees or deletes it
  const bob = (await signIn('bob')).pb;
  assert.equal((await bob.collection('_externalAuths').getFullList()).every((l) => l.recordRef !== auth.record.id), true);
  await expectStatus(bob.collection('_externalAuths').delete(links[0].id), 404);
  assert.equal(await pb.collection('users').unlinkExternalAuth(auth.record.id, 'oidc'), true);
  assert.equal((await pb.collection('users').listExternalAuths(auth.record.id)).length, 0);
  // linked again by the verified email
  const again = await signIn('alice');
  assert.equal(again.auth.record.id, auth.record.id);
  assert.equal((await pb.collection('users').listExternalAuths(auth.record.id)).length, 1);
});

test('deleting a user deletes its links; the next sign-in is a new sign-up', async () => {
  accounts.erin = { email: 'erin@example.com', email_verified: true, name: 'Erin' };
  const { pb, auth } = await signIn('erin');
  const mine = () => su.collection('_externalAuths').getFullList({ filter: `recordRef = "${auth.record.id}"` });
  assert.equal((await mine()).length, 1);
  await pb.collection('users').delete(auth.record.id);
  assert.equal((await mine()).length, 0);
  const again = await signIn('erin');
  assert.equal(again.auth.meta.isNew, true);
  assert.notEqual(again.auth.record.id, auth.record.id);
});

test('bad input: unknown provider, missing code, disabled OAuth2, unknown collection', async () => {
  const pb = client(srv.url);
  const e1 = await expectStatus(pb.collection('users').authWithOAuth2Code('github', 'c', 'v', REDIRECT), 400);
  assert.equal(e1.response.data.provider.code, 'validation_invalid_provider');
  const e2 = await expectStatus(pb.collection('users').authWithOAuth2Code('oidc', '', 'v', REDIRECT), 400);
  assert.equal(e2.response.data.code.code, 'validation_required');
  const e3 = await expectStatus(pb.collection('users').authWithOAuth2Code('oidc', 'c', 'v', ''), 400);
  assert.equal(e3.response.data.redirectURL.code, 'validation_required');
  await expectStatus(pb.collection('members').authWithOAuth2Code('oidc', 'c', 'v', REDIRECT), 403);
  await expectStatus(pb.collection('nope').authWithOAuth2Code('oidc', 'c', 'v', REDIRECT), 404);
  // a made-up code reaches the provider, which refuses it
  const e4 = await expectStatus(pb.collection('users').authWithOAuth2Code('oidc', 'made-up', 'v'.repeat(43), REDIRECT), 400);
  assert.equal(e4.response.message, 'Failed to fetch OAuth2 token.');
});

test('the redirect page without a waiting realtime client is a failure page', async () => {
  const r = await fetch(`${srv.url}/api/oauth2-redirect?state=nobody&code=x`);
  assert.equal(r.status, 200);
  assert.match(await r.text(), /Failed to authenticate/);
  const p = await fetch(`${srv.url}/api/oauth2-redirect`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'state=nobody&code=x',
  });
  assert.equal(p.status, 200);
});

test('authWithOAuth2 (realtime + redirect page) completes a sign-in', async () => {
  const pb = client(srv.url);
  const auth = await pb.collection('users').authWithOAuth2({
    provider: 'oidc',
    urlCallback: async (url) => {
      // the browser: the provider sends it to our redirect page, which tells the SDK
      const landing = await browse(url, 'alice', { redirect: `${srv.url}/api/oauth2-redirect`, full: true });
      const r = await fetch(landing);
      assert.equal(r.status, 200);
      assert.match(await r.text(), /Auth completed/);
    },
  });
  assert.equal(auth.record.email, 'alice@example.com');
  assert.equal(auth.meta.id, 'alice');
});

test('impersonate: superusers get a non-refreshable token of the given duration', async () => {
  const u = (await su.collection('users').getFullList({ filter: 'email = "bob@example.com"' }))[0];
  const other = await su.collection('users').impersonate(u.id, 120);
  assert.equal(other.authStore.record.id, u.id);
  const payload = JSON.parse(Buffer.from(other.authStore.token.split('.')[1], 'base64url'));
  assert.equal(payload.refreshable, false);
  const left = payload.exp - Math.floor(Date.now() / 1000);
  assert.ok(left <= 120 && left > 0, `exp in ${left}s`);
  // it acts as the user, and cannot be refreshed into a full sign-in
  assert.equal((await other.collection('users').getOne(u.id)).id, u.id);
  await expectStatus(other.collection('users').authRefresh(), 401);
  // duration 0: the collection's own duration
  const dflt = await su.collection('users').impersonate(u.id, 0);
  const p2 = JSON.parse(Buffer.from(dflt.authStore.token.split('.')[1], 'base64url'));
  assert.ok(p2.exp - Math.floor(Date.now() / 1000) > 86400);
  // only superusers; unknown records are 404; bad durations 400
  const bobPb = (await signIn('bob')).pb;
  await expectStatus(bobPb.collection('users').impersonate(u.id, 60), 403);
  await expectStatus(client(srv.url).collection('users').impersonate(u.id, 60), 403);
  await expectStatus(su.collection('users').impersonate('missing00000000', 60), 404);
  await expectStatus(su.collection('users').impersonate(u.id, -5), 400);
});
