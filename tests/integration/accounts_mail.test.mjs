// Issue 15, points 1-3: mail, the account flows and MFA, through the real `pocketbase` SDK with
// every mail caught by a real SMTP server (smtp-server on 127.0.0.1, parsed with mailparser).
// Each flow is driven end to end from the mail's own link or code, and bad input (forged,
// reused, expired tokens; wrong codes; unknown emails) gets PocketBase's status with nothing
// changed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWithSuperuser, client, expectStatus, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';
import { start } from './lib/server.mjs';
import { rmSync } from 'node:fs';
import { startSmtp, SMTP_USER, SMTP_PASS } from './lib/smtp.mjs';

let srv, su, smtp;
const PW = 'first-passw0rd';

before(async () => {
  smtp = await startSmtp();
  ({ srv, pb: su } = await startWithSuperuser());
  await su.settings.update({
    meta: { appName: 'Tandem Test', appURL: 'https://app.example.com', senderName: 'Tändem Support', senderAddress: 'noreply@example.com' },
    smtp: { enabled: true, host: '127.0.0.1', port: smtp.port, username: SMTP_USER, password: SMTP_PASS, authMethod: 'PLAIN', tls: false },
  });
});
after(async () => {
  await srv.stop();
  await smtp.close();
});

const to = (addr) => (m) => m.envelope.to.includes(addr);
const tokenOf = (m, kind) => {
  const r = new RegExp(`/_/#/auth/${kind}/([A-Za-z0-9_.-]+)`).exec(m.html);
  assert.ok(r, `no ${kind} link in ${m.html}`);
  return r[1];
};
const codeOf = (m) => /<strong>(\d+)<\/strong>/.exec(m.html)[1];

async function newUser(email, extra = {}) {
  return su.collection('users').create({ email, password: PW, passwordConfirm: PW, ...extra });
}

test('test email: the template is rendered with the settings and sent over authenticated SMTP', async () => {
  assert.equal(await su.settings.testEmail('users', 'probe@example.com', 'verification'), true);
  const m = await smtp.waitMail(to('probe@example.com'));
  assert.equal(m.subject, 'Verify your Tandem Test email');
  assert.equal(m.from.value[0].address, 'noreply@example.com');
  assert.equal(m.from.value[0].name, 'Tändem Support');
  assert.match(m.html, /https:\/\/app\.example\.com\/_\/#\/auth\/confirm-verification\//);
  assert.ok(smtp.auths.some((a) => a.username === SMTP_USER && a.method === 'PLAIN'));
  // bad input: 400 with the field named, guests 401
  const e = await expectStatus(su.settings.testEmail('users', 'not-an-email', 'verification'), 400);
  assert.ok(e.response.data.email);
  await expectStatus(su.settings.testEmail('users', 'a@example.com', 'nope'), 400);
  await expectStatus(client(srv.url).settings.testEmail('users', 'a@example.com', 'otp'), 401);
});

test('verification: request, confirm from the mail, single-use token, forged and unknown', async () => {
  const u = await newUser('verify@example.com', { name: 'Ver <b>' });
  await su.collection('users').update(u.id, {}); // untouched: still unverified
  const guest = client(srv.url);
  assert.equal(await guest.collection('users').requestVerification('nobody@example.com'), true);
  assert.equal(await guest.collection('users').requestVerification('verify@example.com'), true);
  const m = await smtp.waitMail(to('verify@example.com'));
  assert.ok(!smtp.mails.some(to('nobody@example.com')), 'no mail for an unknown address');
  const token = tokenOf(m, 'confirm-verification');
  // a forged token (payload changed, signature kept) changes nothing
  const [h, p, s] = token.split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  const forged = [h, Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 9999 })).toString('base64url'), s].join('.');
  await expectStatus(guest.collection('users').confirmVerification(forged), 400);
  assert.equal((await su.collection('users').getOne(u.id)).verified, false);
  // an auth token is not a verification token
  const signed = client(srv.url);
  await signed.collection('users').authWithPassword('verify@example.com', PW);
  await expectStatus(guest.collection('users').confirmVerification(signed.authStore.token), 400);
  assert.equal(claims.type, 'verification');
  assert.equal(claims.email, 'verify@example.com');
  assert.equal(await guest.collection('users').confirmVerification(token), true);
  assert.equal((await su.collection('users').getOne(u.id)).verified, true);
  const again = await expectStatus(guest.collection('users').confirmVerification(token), 400);
  assert.equal(again.response.data.token.code, 'validation_invalid_token');
  await expectStatus(guest.collection('users').confirmVerification(''), 400);
  await expectStatus(guest.collection('nope').requestVerification('a@example.com'), 404);
});

test('verification token expiry follows verificationToken.duration', async () => {
  await su.collections.update('users', { verificationToken: { duration: 1 } });
  try {
    await newUser('late@example.com');
    await client(srv.url).collection('users').requestVerification('late@example.com');
    const token = tokenOf(await smtp.waitMail(to('late@example.com')), 'confirm-verification');
    await new Promise((r) => setTimeout(r, 2100));
    await expectStatus(client(srv.url).collection('users').confirmVerification(token), 400);
    assert.equal((await su.collection('users').getFirstListItem('email="late@example.com"')).verified, false);
  } finally {
    await su.collections.update('users', { verificationToken: { duration: 259200 } });
  }
});

test('password reset: confirm from the mail, other sessions end, the token works once', async () => {
  await newUser('reset@example.com');
  const session = client(srv.url);
  await session.collection('users').authWithPassword('reset@example.com', PW);
  const guest = client(srv.url);
  assert.equal(await guest.collection('users').requestPasswordReset('reset@example.com'), true);
  assert.equal(await guest.collection('users').requestPasswordReset('ghost@example.com'), true);
  const m = await smtp.waitMail(to('reset@example.com'));
  assert.equal(m.subject, 'Reset your Tandem Test password');
  const token = tokenOf(m, 'confirm-password-reset');
  const bad = await expectStatus(guest.collection('users').confirmPasswordReset(token, 'new-passw0rd!', 'different'), 400);
  assert.ok(bad.response.data.passwordConfirm);
  await session.collection('users').authRefresh(); // still valid: nothing changed
  assert.equal(await guest.collection('users').confirmPasswordReset(token, 'new-passw0rd!', 'new-passw0rd!'), true);
  await expectStatus(session.collection('users').authRefresh(), 401);
  await expectStatus(client(srv.url).collection('users').authWithPassword('reset@example.com', PW), 400);
  await client(srv.url).collection('users').authWithPassword('reset@example.com', 'new-passw0rd!');
  await expectStatus(guest.collection('users').confirmPasswordReset(token, 'third-passw0rd', 'third-passw0rd'), 400);
  await client(srv.url).collection('users').authWithPassword('reset@example.com', 'new-passw0rd!');
  assert.ok(!smtp.mails.some(to('ghost@example.com')));
});

test('email change: the mail goes to the new address, needs the password, works once', async () => {
  await newUser('old@example.com');
  await newUser('taken@example.com');
  const me = client(srv.url);
  await me.collection('users').authWithPassword('old@example.com', PW);
  await expectStatus(client(srv.url).collection('users').requestEmailChange('x@example.com'), 401);
  await expectStatus(me.collection('users').requestEmailChange('taken@example.com'), 400);
  assert.equal(await me.collection('users').requestEmailChange('new@example.com'), true);
  const m = await smtp.waitMail(to('new@example.com'));
  const token = tokenOf(m, 'confirm-email-change');
  const guest = client(srv.url);
  const wrong = await expectStatus(guest.collection('users').confirmEmailChange(token, 'wrong-password'), 400);
  assert.ok(wrong.response.data.password);
  await me.collection('users').authWithPassword('old@example.com', PW); // unchanged
  assert.equal(await guest.collection('users').confirmEmailChange(token, PW), true);
  const after = client(srv.url);
  const r = await after.collection('users').authWithPassword('new@example.com', PW);
  assert.equal(r.record.email, 'new@example.com');
  assert.equal(r.record.verified, true);
  await expectStatus(guest.collection('users').confirmEmailChange(token, PW), 400);
  await expectStatus(me.collection('users').authRefresh(), 401);
});

test('OTP: request, sign in with the mailed code, wrong and reused codes, unknown email', async () => {
  const guest = client(srv.url);
  await expectStatus(guest.collection('users').requestOTP('otp@example.com'), 403); // not enabled
  await su.collections.update('users', { otp: { enabled: true, duration: 180, length: 6 } });
  const u = await newUser('otp@example.com');
  const methods = await guest.collection('users').listAuthMethods();
  assert.equal(methods.otp.enabled, true);
  assert.equal(methods.otp.duration, 180);
  const ghost = await guest.collection('users').requestOTP('ghost@example.com');
  assert.match(ghost.otpId, /^[a-z0-9]{15}$/);
  await expectStatus(guest.collection('users').authWithOTP(ghost.otpId, '000000'), 400);
  const { otpId } = await guest.collection('users').requestOTP('otp@example.com');
  const m = await smtp.waitMail(to('otp@example.com'));
  assert.equal(m.subject, 'OTP for Tandem Test');
  const code = codeOf(m);
  assert.equal(code.length, 6);
  const wrongCode = code === '000000' ? '111111' : '000000';
  await expectStatus(guest.collection('users').authWithOTP(otpId, wrongCode), 400);
  assert.equal(guest.authStore.isValid, false);
  const r = await guest.collection('users').authWithOTP(otpId, code);
  assert.equal(r.record.id, u.id);
  assert.equal(r.record.verified, true); // the code reached the record's own address
  await expectStatus(client(srv.url).collection('users').authWithOTP(otpId, code), 400);
  assert.ok(!smtp.mails.some(to('ghost@example.com')));
});

test('OTP: five wrong codes lock the code', async () => {
  await newUser('brute@example.com');
  const guest = client(srv.url);
  const { otpId } = await guest.collection('users').requestOTP('brute@example.com');
  const code = codeOf(await smtp.waitMail(to('brute@example.com')));
  const wrong = code === '000000' ? '111111' : '000000';
  for (let i = 0; i < 5; i++) await expectStatus(guest.collection('users').authWithOTP(otpId, wrong), 400);
  await expectStatus(guest.collection('users').authWithOTP(otpId, code), 429);
});

test('MFA: the password alone gets 401 with an mfaId; OTP completes it; the rule decides who', async () => {
  // MFA with the password as the only method would lock everyone out: refused, nothing stored
  const lone = await expectStatus(su.collections.update('users', { otp: { enabled: false }, mfa: { enabled: true } }), 400);
  assert.equal(lone.response.data.mfa.code, 'validation_mfa_not_enough_auths');
  await expectStatus(su.collections.update('users', { mfa: { enabled: true, duration: 5 } }), 400);
  assert.equal((await su.collections.getOne('users')).otp.enabled, true);
  await client(srv.url).collection('users').authWithPassword('otp@example.com', PW); // no MFA yet
  await su.collections.update('users', { otp: { enabled: true, duration: 180, length: 6 }, mfa: { enabled: true, duration: 600, rule: "email != 'free@example.com'" } });
  try {
    await newUser('mfa@example.com');
    await newUser('free@example.com');
    const c = client(srv.url);
    // the security bug: before, this returned a full token
    const e = await expectStatus(c.collection('users').authWithPassword('mfa@example.com', PW), 401);
    const mfaId = e.response.mfaId;
    assert.match(mfaId, /^[a-z0-9]{15}$/);
    assert.equal(c.authStore.isValid, false);
    assert.equal((await c.collection('users').listAuthMethods()).mfa.enabled, true);
    // the same factor twice is refused; a made-up mfaId too
    const same = await expectStatus(c.collection('users').authWithPassword('mfa@example.com', PW, { mfaId }), 400);
    assert.match(same.response.message, /different authentication method/);
    await expectStatus(c.collection('users').authWithPassword('mfa@example.com', PW, { mfaId: 'abcdefghijklmno' }), 400);
    // an mfaId of another record does not complete this one
    const other = await expectStatus(c.collection('users').authWithPassword('mfa@example.com', PW), 401);
    await newUser('mfa2@example.com');
    const { otpId: o2 } = await c.collection('users').requestOTP('mfa2@example.com');
    const code2 = codeOf(await smtp.waitMail(to('mfa2@example.com')));
    await expectStatus(c.collection('users').authWithOTP(o2, code2, { mfaId: other.response.mfaId }), 400);
    // OTP as the second factor
    const { otpId } = await c.collection('users').requestOTP('mfa@example.com');
    const code = codeOf(await smtp.waitMail(to('mfa@example.com')));
    const r = await c.collection('users').authWithOTP(otpId, code, { mfaId });
    assert.equal(r.record.email, 'mfa@example.com');
    assert.ok(c.authStore.isValid);
    // the session is used up
    await expectStatus(c.collection('users').authWithPassword('mfa@example.com', PW, { mfaId }), 400);
    // OTP first, password second also works
    const { otpId: o3 } = await c.collection('users').requestOTP('mfa@example.com');
    const code3 = codeOf(await smtp.waitMail(to('mfa@example.com')));
    const first = await expectStatus(client(srv.url).collection('users').authWithOTP(o3, code3), 401);
    const done = await client(srv.url).collection('users').authWithPassword('mfa@example.com', PW, { mfaId: first.response.mfaId });
    assert.ok(done.token);
    // the rule leaves free@ out
    const free = await client(srv.url).collection('users').authWithPassword('free@example.com', PW);
    assert.ok(free.token);
  } finally {
    await su.collections.update('users', { mfa: { enabled: false, duration: 1800, rule: '' } });
  }
});

test('authAlert: a sign-in from a new device mails the record; a known device does not', async () => {
  await newUser('alert@example.com');
  const device = (ua) => {
    const c = client(srv.url);
    c.beforeSend = (url, options) => ({ url, options: { ...options, headers: { ...options.headers, 'User-Agent': ua } } });
    return c;
  };
  await device('phone/1').collection('users').authWithPassword('alert@example.com', PW); // first: no alert
  await device('phone/1').collection('users').authWithPassword('alert@example.com', PW);
  await device('laptop/2 <a href="https://evil.example">x</a>').collection('users').authWithPassword('alert@example.com', PW);
  const m = await smtp.waitMail(to('alert@example.com'));
  assert.equal(m.subject, 'Login from a new location');
  assert.match(m.html, /laptop\/2 &lt;a href=&#34;https:\/\/evil\.example&#34;&gt;/); // the client's text stays text
  assert.ok(!m.html.includes('<a href="https://evil.example">'));
  assert.ok(!smtp.mails.some(to('alert@example.com')), 'exactly one alert');
  // the queue's counters: every mail of this file was sent, none is dead
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  assert.ok(Number(/^tandem_mail_sent_total (\d+)$/m.exec(text)[1]) >= 10);
  assert.equal(Number(/^tandem_mail_dead_total (\d+)$/m.exec(text)[1]), 0);
});

test('bad input on every flow route: 400 (or 401/404) and no mail, nothing changed', async () => {
  const u = await newUser('bad@example.com');
  const post = async (path, body, headers = {}) => {
    const r = await fetch(`${srv.url}/api/collections/users/${path}`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body,
    });
    const j = await r.json();
    return { status: r.status, body: j };
  };
  const long = 'x'.repeat(9000);
  const cases = [
    ['request-verification', '{"email":'], ['request-verification', '{"email":"no-at-sign"}'],
    ['request-verification', JSON.stringify({ email: `${'a'.repeat(250)}@example.com` })],
    ['confirm-verification', '{}'], ['confirm-verification', JSON.stringify({ token: long })],
    ['confirm-verification', JSON.stringify({ token: 'a.b.c' })],
    ['request-password-reset', '[]'], ['request-password-reset', JSON.stringify({ email: 7 })],
    ['confirm-password-reset', JSON.stringify({ token: 'a.b.c', password: 'abcdefgh1', passwordConfirm: 'abcdefgh1' })],
    ['confirm-password-reset', JSON.stringify({ token: long, password: 'x', passwordConfirm: 'y' })],
    ['confirm-email-change', JSON.stringify({ token: 'a.b.c', password: PW })],
    ['confirm-email-change', JSON.stringify({ token: 'a.b.c' })],
    ['request-otp', JSON.stringify({ email: 'bad@example' })],
    ['auth-with-otp', JSON.stringify({ otpId: 'nope', password: '123456' })],
    ['auth-with-otp', JSON.stringify({ otpId: long, password: '1' })],
  ];
  for (const [path, body] of cases) {
    const r = await post(path, body);
    assert.equal(r.status, 400, `${path} ${body.slice(0, 40)} -> ${r.status} ${JSON.stringify(r.body)}`);
    assert.equal(typeof r.body.message, 'string');
    assert.equal(r.body.status, 400);
  }
  assert.equal((await post('request-email-change', JSON.stringify({ newEmail: 'z@example.com' }))).status, 401);
  const missing = await fetch(`${srv.url}/api/collections/nope/request-otp`, { method: 'POST', body: '{}' });
  assert.equal(missing.status, 404);
  const after = await su.collection('users').getOne(u.id);
  assert.equal(after.email, 'bad@example.com');
  assert.equal(after.verified, false);
  await client(srv.url).collection('users').authWithPassword('bad@example.com', PW);
  assert.ok(!smtp.mails.some(to('bad@example.com')));
});

test('two racing confirms of one reset token: exactly one wins', async () => {
  await newUser('race@example.com');
  await client(srv.url).collection('users').requestPasswordReset('race@example.com');
  const token = tokenOf(await smtp.waitMail(to('race@example.com')), 'confirm-password-reset');
  const tries = await Promise.allSettled(['race-pw-one1', 'race-pw-two2', 'race-pw-three3'].map((p) =>
    client(srv.url).collection('users').confirmPasswordReset(token, p, p)));
  const won = tries.map((t, i) => [t, i]).filter(([t]) => t.status === 'fulfilled');
  assert.equal(won.length, 1);
  for (const t of tries) if (t.status === 'rejected') assert.equal(t.reason.status, 400);
  const pw = ['race-pw-one1', 'race-pw-two2', 'race-pw-three3'][won[0][1]];
  await client(srv.url).collection('users').authWithPassword('race@example.com', pw);
});

test('mail queued while SMTP is off survives a restart and goes out once SMTP is on', async () => {
  const own = await startWithSuperuser({ keepDir: true });
  let s2 = own.srv;
  try {
    await own.pb.collection('users').create({ email: 'later@example.com', password: PW, passwordConfirm: PW });
    await client(s2.url).collection('users').requestPasswordReset('later@example.com'); // SMTP off: queued
    await s2.stop();
    s2 = await start({ dir: own.dir, keepDir: true });
    const admin = client(s2.url);
    await admin.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
    await admin.settings.update({ smtp: { enabled: true, host: '127.0.0.1', port: smtp.port, username: SMTP_USER, password: SMTP_PASS } });
    const m = await smtp.waitMail(to('later@example.com'));
    const token = tokenOf(m, 'confirm-password-reset');
    assert.equal(await client(s2.url).collection('users').confirmPasswordReset(token, 'later-passw0rd', 'later-passw0rd'), true);
  } finally {
    await s2.stop();
    rmSync(own.dir, { recursive: true, force: true });
  }
});
