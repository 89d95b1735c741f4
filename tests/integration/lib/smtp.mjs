// A real SMTP server for the mail tests: the `smtp-server` package on 127.0.0.1 with an
// ephemeral port and AUTH required, every message parsed with `mailparser`. waitMail() waits
// for the next message matching a predicate (failing after a generous bound so a missing mail
// fails the test instead of hanging it). Plain by default; tls: {key, cert} offers STARTTLS
// (and refuses AUTH before it), tls with implicit: true speaks TLS from the first byte. Each
// entry of auths says whether its session was encrypted (secure).
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';

export const SMTP_USER = 'mailer';
export const SMTP_PASS = 'mailer-secret';

export async function startSmtp({ tls = null } = {}) {
  const mails = [];
  const waiters = [];
  const auths = [];
  const server = new SMTPServer({
    secure: !!tls?.implicit,
    authOptional: false,
    allowInsecureAuth: !tls,
    disabledCommands: tls ? [] : ['STARTTLS'],
    ...(tls ? { key: tls.key, cert: tls.cert } : {}),
    logger: false,
    onAuth(auth, session, cb) {
      auths.push({ method: auth.method, username: auth.username, secure: !!session.secure });
      if (auth.username === SMTP_USER && auth.password === SMTP_PASS) return cb(null, { user: auth.username });
      return cb(new Error('Invalid username or password'));
    },
    onData(stream, session, cb) {
      simpleParser(stream).then((m) => {
        m.envelope = { from: session.envelope.mailFrom.address, to: session.envelope.rcptTo.map((r) => r.address) };
        mails.push(m);
        for (const w of [...waiters]) w();
        cb();
      }, cb);
    },
  });
  const errors = []; // what the server reported (e.g. a TLS handshake a client gave up)
  server.on('error', (e) => errors.push(e.message));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.server.address().port;
  return {
    port,
    mails,
    auths,
    errors,
    // the next mail (after the ones already returned) that matches pred
    async waitMail(pred = () => true, boundMs = 20000) {
      const deadline = Date.now() + boundMs;
      for (;;) {
        for (let i = 0; i < mails.length; i++) {
          if (pred(mails[i])) {
            const m = mails[i];
            mails.splice(i, 1);
            return m;
          }
        }
        if (Date.now() > deadline) throw new Error(`no matching mail arrived; got ${mails.map((m) => m.subject).join(', ')}`);
        await new Promise((resolve) => {
          const w = () => { waiters.splice(waiters.indexOf(w), 1); clearTimeout(t); resolve(); };
          const t = setTimeout(w, 200);
          waiters.push(w);
        });
      }
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
