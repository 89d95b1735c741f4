// Mail over TLS with the real `smtp-server` package: a certificate authority and a server
// certificate for 127.0.0.1 made in the test with the openssl command line, tandem trusting
// that authority through --smtp-ca-file. With STARTTLS offered, tandem upgrades the connection
// before it authenticates (the server refuses AUTH on a plain connection); with
// settings.smtp.tls it speaks TLS from the first byte; without the authority the certificate
// check fails and nothing is sent (verification is never turned off).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './lib/server.mjs';
import { startWithSuperuser } from './lib/pb.mjs';
import { startSmtp, SMTP_USER, SMTP_PASS } from './lib/smtp.mjs';

let certs, ca, key, cert;

function openssl(...args) {
  execFileSync('openssl', args, { cwd: certs, stdio: ['ignore', 'ignore', 'pipe'] });
}

before(() => {
  certs = tempDir('tandem-tls-');
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=tandem test CA');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(certs, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '2', '-extfile', 'ext.cnf');
  ca = join(certs, 'ca.pem');
  key = readFileSync(join(certs, 'srv.key'));
  cert = readFileSync(join(certs, 'srv.pem'));
});
after(() => rmSync(certs, { recursive: true, force: true }));

const to = (addr) => (m) => m.envelope.to.includes(addr);

async function mailSettings(pb, port, tls) {
  await pb.settings.update({
    meta: { appName: 'Tandem TLS', senderAddress: 'noreply@example.com' },
    smtp: { enabled: true, host: '127.0.0.1', port, username: SMTP_USER, password: SMTP_PASS, authMethod: 'PLAIN', tls },
  });
}

async function metric(url, name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

test('STARTTLS: tandem upgrades the connection, then authenticates; implicit TLS with smtp.tls', async () => {
  const starttls = await startSmtp({ tls: { key, cert } });
  const implicit = await startSmtp({ tls: { key, cert, implicit: true } });
  const { srv, pb } = await startWithSuperuser({ args: ['--smtp-ca-file', ca] });
  try {
    await mailSettings(pb, starttls.port, false);
    assert.equal(await pb.settings.testEmail('users', 'starttls@example.com', 'verification'), true);
    const m = await starttls.waitMail(to('starttls@example.com'));
    assert.equal(m.subject, 'Verify your Tandem TLS email');
    assert.deepEqual(starttls.auths, [{ method: 'PLAIN', username: SMTP_USER, secure: true }]);

    await mailSettings(pb, implicit.port, true);
    assert.equal(await pb.settings.testEmail('users', 'implicit@example.com', 'verification'), true);
    await implicit.waitMail(to('implicit@example.com'));
    assert.deepEqual(implicit.auths, [{ method: 'PLAIN', username: SMTP_USER, secure: true }]);
  } finally {
    await srv.stop();
    await starttls.close();
    await implicit.close();
  }
});

test('an untrusted certificate: the send fails, nothing is authenticated or delivered', async () => {
  const starttls = await startSmtp({ tls: { key, cert } });
  const { srv, pb } = await startWithSuperuser(); // the system's authorities only
  try {
    await mailSettings(pb, starttls.port, false);
    assert.equal(await pb.settings.testEmail('users', 'untrusted@example.com', 'verification'), true);
    const t0 = Date.now();
    // the server saw the handshake fail, and tandem counted the failed send
    while ((await metric(srv.url, 'tandem_mail_failed_attempts_total')) < 1 || !starttls.errors.some((e) => /TLS/.test(e))) {
      assert.ok(Date.now() - t0 < 30000, 'the send never failed');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(starttls.auths, []);
    assert.equal(starttls.mails.length, 0);
  } finally {
    await srv.stop();
    await starttls.close();
  }
});
