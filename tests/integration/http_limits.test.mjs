// Connection exhaustion: idle connections and slowloris clients from other addresses must not
// stop the server answering a normal client. Everything stays on 127.0.0.0/8 and is bounded:
// the attackers use 127.0.0.2 and 127.0.0.3, the normal client 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { start, BIN, tempDir } from './lib/server.mjs';

// Opens a connection from localAddress; resolves once connected with {sock, closed, data()}.
function open(port, localAddress) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    let data = '';
    let closedAt = 0;
    const closed = new Promise((res) => sock.on('close', () => { closedAt = Date.now(); res(); }));
    sock.on('data', (d) => { data += d; });
    sock.on('error', () => {});
    sock.once('connect', () => resolve({ sock, closed, data: () => data, closedAt: () => closedAt }));
    sock.once('error', reject);
  });
}

// Resolves true when p settles within ms, false otherwise (a bound, so a failure cannot hang).
function within(p, ms) {
  let timer;
  return Promise.race([p.then(() => true),
    new Promise((res) => { timer = setTimeout(() => res(false), ms); })]).finally(() => clearTimeout(timer));
}

test('idle floods and slowloris from other addresses do not stop a normal client', async () => {
  const srv = await start({
    args: ['--threads', '2', '--max-connections', '60', '--max-connections-per-ip', '20',
      '--request-timeout', '2s', '--idle-timeout', '60s'],
  });
  const conns = [];
  try {
    // 80 idle connections from one address: more than the per-address limit, and more than
    // the server takes in all. Only 20 may stay; the rest are closed at once.
    const idle = [];
    for (let i = 0; i < 80; i++) idle.push(await open(srv.port, '127.0.0.2'));
    conns.push(...idle);
    const refused = idle.map((c) => c.closed);
    let nClosed = 0;
    for (const p of refused) p.then(() => { nClosed++; });
    const sixtyClosed = new Promise((res) => {
      const check = () => (nClosed >= 60 ? res() : setTimeout(check, 20));
      check();
    });
    assert.ok(await within(sixtyClosed, 15000), `only ${nClosed} of 80 idle connections were refused`);

    // slowloris from a second address: a request that never ends, one byte every 250 ms
    const text = 'GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(200);
    const slow = [];
    for (let i = 0; i < 5; i++) slow.push(await open(srv.port, '127.0.0.3'));
    conns.push(...slow);
    const firstByte = [];
    const timers = slow.map((c, k) => {
      let i = 0;
      firstByte[k] = Date.now();
      const t = setInterval(() => {
        if (i < text.length && !c.sock.destroyed) c.sock.write(text[i++]);
      }, 250);
      c.closed.then(() => clearInterval(t));
      return t;
    });

    // while both attacks hold their connections, a normal client is answered
    const r = await fetch(`${srv.url}/api/health`, { signal: AbortSignal.timeout(10000) });
    assert.equal(r.status, 200);
    assert.equal((await r.json()).code, 200);

    // the slow requests are cut off at the 2 s deadline (their text would last 60 s, the
    // idle timeout is 60 s), with a 408 envelope
    for (const [k, c] of slow.entries()) {
      const ended = await within(c.closed, 15000);
      clearInterval(timers[k]);
      assert.ok(ended, 'slowloris connection still open');
      assert.ok(c.closedAt() - firstByte[k] >= 2000, 'closed before the deadline');
      assert.match(c.data(), /^HTTP\/1\.1 408 /);
      assert.ok(c.data().endsWith('{"data":{},"message":"Request timeout.","status":408}'));
    }

    // the 20 idle connections that were let in are still open: silence is the idle timeout's
    // business, and it is 60 s
    assert.equal(idle.filter((c) => !c.closedAt()).length, 20);

    // and the server still answers, and counted what it did
    const m = await (await fetch(`${srv.url}/metrics`, { signal: AbortSignal.timeout(10000) })).text();
    assert.match(m, /\ntandem_http_request_timeouts_total 5\n/);
    const open20 = /\ntandem_http_connections (\d+)\n/.exec(m);
    assert.ok(open20 && Number(open20[1]) >= 20);
  } finally {
    for (const c of conns) c.sock.destroy();
    await srv.stop();
  }
});

test('the soft open-file limit is raised to the hard one at start', async (t) => {
  const hard = Number(/^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))[1]);
  if (!(hard > 256)) return t.skip(`hard open-file limit is ${hard}`);
  const dir = tempDir();
  // start with a low soft limit, as many systems do (1024)
  const proc = spawn('sh', ['-c', 'ulimit -Sn 256 && exec "$0" "$@"', BIN, 'serve', '--http', '127.0.0.1:0',
    '--dir', dir], { env: { ...process.env, TANDEM_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((res) => proc.on('exit', res));
  try {
    const line = await new Promise((res, rej) => {
      createInterface({ input: proc.stdout }).once('line', res);
      exited.then(() => rej(new Error('tandem exited')));
    });
    assert.match(line, /^tandem listening on /);
    const limits = readFileSync(`/proc/${proc.pid}/limits`, 'utf8');
    const [, soft, hardNow] = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
    assert.equal(soft, hardNow);
  } finally {
    proc.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
});
