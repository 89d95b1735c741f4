// Foundation: command line, health, error envelopes, limits, keep-alive, metrics, shutdown.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { existsSync, statSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { start, run, tempDir } from './lib/server.mjs';

let srv;
before(async () => { srv = await start(); });
after(async () => { await srv.stop(); });

test('first stdout line names the bound address', () => {
  assert.match(srv.firstLine, /^tandem listening on http:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(srv.port, 0);
});

test('data directory is created with mode 0700', () => {
  assert.equal(statSync(srv.dir).mode & 0o777, 0o700);
});

test('GET /api/health answers PocketBase shape with a request id', async () => {
  const r = await fetch(`${srv.url}/api/health`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.match(r.headers.get('x-request-id'), /^[0-9a-f]{16}$/);
  assert.deepEqual(await r.json(), { code: 200, message: 'API is healthy.', data: {} });
  const r2 = await fetch(`${srv.url}/api/health`);
  assert.notEqual(r2.headers.get('x-request-id'), r.headers.get('x-request-id'));
});

test('unknown route is a 404 envelope', async () => {
  const r = await fetch(`${srv.url}/api/nothing/here?x=1`);
  assert.equal(r.status, 404);
  assert.ok(r.headers.get('x-request-id'));
  assert.deepEqual(await r.json(), { data: {}, message: "The requested resource wasn't found.", status: 404 });
});

test('wrong method is a 405 envelope with Allow', async () => {
  const r = await fetch(`${srv.url}/api/health`, { method: 'DELETE' });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'GET');
  assert.deepEqual(await r.json(), { data: {}, message: 'Method not allowed.', status: 405 });
});

function rawRequest(port, text, { closeAfter = 3000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => { sock.destroy(); resolve(data); }, closeAfter);
    sock.on('data', (d) => { data += d; });
    sock.on('end', () => { clearTimeout(timer); resolve(data); });
    sock.on('error', (e) => { clearTimeout(timer); if (data) resolve(data); else reject(e); });
    sock.write(text);
  });
}

test('body over --max-body is 413 before the body is read', async () => {
  const small = await start({ env: { TANDEM_MAX_BODY: '1KiB' } });
  try {
    // declare 64 MiB but send none of it: the answer must still come
    const resp = await rawRequest(small.port,
      'POST /api/health HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 67108864\r\n\r\n');
    assert.match(resp, /^HTTP\/1\.1 413 /);
    const body = resp.slice(resp.indexOf('\r\n\r\n') + 4);
    assert.deepEqual(JSON.parse(body), { data: {}, message: 'Request entity too large.', status: 413 });
  } finally {
    await small.stop();
  }
});

test('keep-alive: several requests share one connection', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const reused = [];
  for (let i = 0; i < 5; i++) {
    await new Promise((resolve, reject) => {
      const req = http.get(`${srv.url}/api/health`, { agent }, (res) => {
        reused.push(req.reusedSocket);
        assert.equal(res.statusCode, 200);
        assert.notEqual(res.headers.connection, 'close');
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
    });
  }
  agent.destroy();
  assert.deepEqual(reused, [false, true, true, true, true]);
});

test('metrics: Prometheus text with route patterns, never raw paths', async () => {
  await fetch(`${srv.url}/api/health`);
  await fetch(`${srv.url}/some/raw/path/12345`);
  const r = await fetch(`${srv.url}/metrics`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const text = await r.text();
  for (const fam of ['tandem_http_requests_total counter', 'tandem_http_request_duration_seconds histogram',
    'tandem_http_in_flight gauge', 'tandem_process_resident_memory_bytes gauge',
    'tandem_process_cpu_seconds_total counter', 'tandem_build_info gauge']) {
    assert.ok(text.includes(`# TYPE ${fam}\n`), fam);
  }
  const health = /tandem_http_requests_total\{method="GET",route="\/api\/health",status="200"\} (\d+)/.exec(text);
  assert.ok(health && Number(health[1]) >= 1);
  assert.match(text, /tandem_http_requests_total\{method="GET",route="unmatched",status="404"\} \d+/);
  assert.ok(!text.includes('/some/raw/path'));
  assert.match(text, /tandem_http_request_duration_seconds_count\{route="\/api\/health"\} \d+/);
  assert.match(text, /tandem_build_info\{version="[^"]+"\} 1/);
  const rss = /tandem_process_resident_memory_bytes (\d+)/.exec(text);
  assert.ok(rss && Number(rss[1]) > 1e6);
  // every sample line parses as name{labels} value
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+0-9.eEInfNa]+$/, line);
  }
});

test('SIGTERM: stops accepting, finishes, exits 0', async () => {
  const s = await start();
  const t0 = Date.now();
  const { code, signal } = await s.stop('SIGTERM');
  assert.equal(signal, null);
  assert.equal(code, 0);
  assert.ok(Date.now() - t0 < 10000);
  await assert.rejects(fetch(`${s.url}/api/health`));
});

test('SIGINT with an open keep-alive connection exits 0', async () => {
  const s = await start();
  const agent = new http.Agent({ keepAlive: true });
  await new Promise((resolve) => http.get(`${s.url}/api/health`, { agent }, (res) => { res.resume(); res.on('end', resolve); }));
  const { code } = await s.stop('SIGINT');
  agent.destroy();
  assert.equal(code, 0);
});

test('command line: version, help, unknown and malformed options', async () => {
  const v = await run(['version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^tandem \d+\.\d+\.\d+\n$/);
  const h = await run(['help']);
  assert.equal(h.code, 0);
  for (const opt of ['--http', '--dir', '--log-level', '--max-body', 'TANDEM_HTTP', 'TANDEM_MAX_BODY']) {
    assert.ok(h.stdout.includes(opt), opt);
  }
  const never = join(tempDir(), 'never');
  const u = await run(['serve', '--bogus', '1']);
  assert.equal(u.code, 2);
  assert.equal(u.stderr, 'tandem: unknown option --bogus\n');
  const m = await run(['serve', '--max-body', 'lots']);
  assert.equal(m.code, 2);
  assert.match(m.stderr, /^tandem: invalid value 'lots' for --max-body .*\n$/);
  const e = await run(['serve', '--dir', join(tempDir(), 'never')], { env: { TANDEM_LOG_LEVEL: 'loud' } });
  assert.equal(e.code, 2);
  assert.match(e.stderr, /--log-level/);
  const c = await run(['frobnicate']);
  assert.equal(c.code, 2);
  const f = await run(['serve', '--fsync', 'sometimes', '--dir', never]);
  assert.equal(f.code, 2);
  assert.match(f.stderr, /--fsync/);
  // a rejected command line creates nothing
  assert.equal(existsSync(never), false);
});

test('environment variables configure the server', async () => {
  const dir = tempDir();
  const nested = join(dir, 'a', 'b');
  const s = await start({ dir: nested, env: { TANDEM_LOG_LEVEL: 'info' } });
  try {
    assert.equal(statSync(nested).mode & 0o777, 0o700);
    await fetch(`${s.url}/api/health`);
  } finally {
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  // access log: one structured line per request at info level
  const line = s.stderr().split('\n').find((l) => l.includes('"path":"/api/health"'));
  assert.ok(line, s.stderr());
  const rec = JSON.parse(line);
  assert.equal(rec.level, 'info');
  assert.equal(rec.method, 'GET');
  assert.equal(rec.status, 200);
  assert.equal(typeof rec.bytes, 'number');
  assert.equal(typeof rec.us, 'number');
});

test('rate limits: 429 with Retry-After once a class window is used up', async () => {
  const s = await start({ args: ['--ratelimit', 'default=3/60s'] });
  try {
    for (let i = 0; i < 3; i++) assert.equal((await fetch(`${s.url}/api/health`)).status, 200);
    const r = await fetch(`${s.url}/api/health`);
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    assert.deepEqual(await r.json(), { data: {}, message: 'Too Many Requests.', status: 429 });
  } finally {
    await s.stop();
  }
  const bad = await run(['serve', '--ratelimit', 'auth=lots', '--dir', join(tempDir(), 'never')]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--ratelimit/);
});
