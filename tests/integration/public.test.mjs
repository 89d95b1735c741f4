// Static hosting (--public, PocketBase's pb_public): content types, ETag/Last-Modified and
// 304, HEAD, directory index without listings, redirects, the SPA index fallback, API and
// dashboard precedence, traversal attempts sent raw over a socket (so no client normalises
// them), links out of the root, a FIFO, a file of several MB, and the default
// <dir>/../tandem_public.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { run, start, tempDir } from './lib/server.mjs';

const servers = [];
const dirs = [];
after(async () => {
  for (const s of servers) await s.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const INDEX = '<!doctype html><title>spa</title><p>root index</p>\n';
const SECRET = 'TOP-SECRET-' + randomBytes(8).toString('hex');
const FILES = {
  'index.html': [INDEX, 'text/html; charset=utf-8'],
  'app.js': ['console.log("app")\n', 'text/javascript; charset=utf-8'],
  'mod.mjs': ['export const x = 1;\n', 'text/javascript; charset=utf-8'],
  'style.css': ['body { color: red }\n', 'text/css; charset=utf-8'],
  'data.json': ['{"a":1}\n', 'application/json; charset=utf-8'],
  'icon.svg': ['<svg xmlns="http://www.w3.org/2000/svg"/>\n', 'image/svg+xml; charset=utf-8'],
  'pic.png': [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 1, 2]), 'image/png'],
  'photo.jpg': [Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]), 'image/jpeg'],
  'font.woff2': [Buffer.from('wOF2....'), 'font/woff2'],
  'prog.wasm': [Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]), 'application/wasm'],
  'notes.txt': ['hello\n', 'text/plain; charset=utf-8'],
  'app.js.map': ['{"version":3}\n', 'application/json; charset=utf-8'],
  'doc.pdf': ['%PDF-1.4\n', 'application/pdf'],
  'blob.xyz': ['???', 'application/octet-stream'],
  'README': ['no extension', 'application/octet-stream'],
  'sub/index.html': ['<p>sub index</p>', 'text/html; charset=utf-8'],
  'sub/page.html': ['<p>sub page</p>', 'text/html; charset=utf-8'],
  'empty/.keep': ['', null],
  '.env': ['API_KEY=' + SECRET, null],
  '.git/config': ['[core] ' + SECRET, null],
  '.well-known/assetlinks.json': ['[]', 'application/json; charset=utf-8'],
  'api/health': ['shadow', null],
  'api/x.txt': ['shadow', null],
  '_/index.html': ['shadow dashboard', null],
};

// A fresh tree: T/pub (the root), T/secret.txt outside it, links in and out.
function makeTree() {
  const top = tempDir('tandem-pub-');
  dirs.push(top);
  const root = join(top, 'pub');
  for (const [name, [body]] of Object.entries(FILES)) {
    mkdirSync(join(root, name, '..'), { recursive: true });
    writeFileSync(join(root, name), body);
  }
  writeFileSync(join(top, 'secret.txt'), SECRET);
  mkdirSync(join(top, 'outside'));
  writeFileSync(join(top, 'outside', 'page.html'), SECRET);
  symlinkSync(join(top, 'secret.txt'), join(root, 'out-link.txt'));
  symlinkSync('../secret.txt', join(root, 'rel-out-link.txt'));
  symlinkSync('/etc/hostname', join(root, 'hostname'));
  symlinkSync(join(top, 'outside'), join(root, 'dir-link'));
  symlinkSync(join(root, 'app.js'), join(root, 'in-link.js'));
  symlinkSync('sub', join(root, 'sub-link'));
  execFileSync('mkfifo', [join(root, 'pipe.txt')]);
  return { top, root };
}

// One request over a raw socket, exactly as written; resolves {status, headers, body}.
function raw(port, method, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`timeout: ${method} ${path}`)); }, 5000);
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', reject);
    sock.on('close', () => {
      clearTimeout(timer);
      const buf = Buffer.concat(chunks);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return reject(new Error(`no response to ${method} ${path}`));
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(lines[0].split(' ')[1]);
      const h = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        h[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status, headers: h, body: buf.subarray(end + 4) });
    });
    let req = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n`;
    for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`;
    sock.write(req + '\r\n');
  });
}

function isJson404(r) {
  assert.equal(r.status, 404);
  assert.match(r.headers['content-type'], /^application\/json/);
  assert.equal(JSON.parse(r.body.toString()).status, 404);
}

test('files: content types, bodies, index pages, redirects, no listing, methods', async () => {
  const { root } = makeTree();
  const srv = await start({ args: ['--public', root, '--index-fallback=false'] });
  servers.push(srv);
  for (const [name, [body, type]] of Object.entries(FILES)) {
    if (!type || name.endsWith('index.html')) continue;
    const r = await raw(srv.port, 'GET', '/' + name);
    assert.equal(r.status, 200, name);
    assert.equal(r.headers['content-type'], type, name);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.deepEqual(r.body, Buffer.from(body), name);
  }
  // the root and a directory with a trailing slash serve their index.html
  let r = await raw(srv.port, 'GET', '/');
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), INDEX);
  assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
  r = await raw(srv.port, 'GET', '/sub/');
  assert.equal(r.body.toString(), '<p>sub index</p>');
  // PocketBase's redirects: directory to its slash form, file and .../index.html to theirs
  for (const [from, to] of [['/sub', '/sub/'], ['/sub/index.html', '/sub/'], ['/index.html', '/'],
    ['/app.js/', '/app.js'], ['/sub-link', '/sub-link/']]) {
    r = await raw(srv.port, 'GET', from);
    assert.equal(r.status, 301, from);
    assert.equal(r.headers.location, to, from);
  }
  r = await raw(srv.port, 'GET', '/sub-link/page.html'); // a link inside the root is followed
  assert.equal(r.body.toString(), '<p>sub page</p>');
  r = await raw(srv.port, 'GET', '/in-link.js');
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), FILES['app.js'][0]);
  // no listing for a directory without index.html, and no fallback here
  r = await raw(srv.port, 'GET', '/empty/');
  isJson404(r);
  assert.doesNotMatch(r.body.toString(), /\.keep/);
  isJson404(await raw(srv.port, 'GET', '/missing.js'));
  isJson404(await raw(srv.port, 'GET', '/some/route'));
  // GET and HEAD only
  for (const m of ['POST', 'PUT', 'PATCH', 'DELETE']) {
    r = await raw(srv.port, m, '/app.js', { 'Content-Length': '0' });
    assert.equal(r.status, 405, m);
    assert.equal(r.headers.allow, 'GET, HEAD');
  }
  r = await raw(srv.port, 'POST', '/', { 'Content-Length': '0' });
  assert.equal(r.status, 405);
  // HEAD: the headers of GET, no body
  r = await raw(srv.port, 'HEAD', '/app.js');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-length'], String(Buffer.byteLength(FILES['app.js'][0])));
  assert.equal(r.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.ok(r.headers.etag);
  assert.equal(r.body.length, 0);
});

test('caching: ETag and If-None-Match, Last-Modified and If-Modified-Since, Cache-Control', async () => {
  const { root } = makeTree();
  const srv = await start({ args: ['--public', root] });
  servers.push(srv);
  const js = await fetch(srv.url + '/app.js');
  await js.text();
  const etag = js.headers.get('etag');
  assert.match(etag, /^"[0-9a-f-]+"$/);
  assert.equal(js.headers.get('cache-control'), 'max-age=3600');
  const html = await fetch(srv.url + '/');
  await html.text();
  assert.equal(html.headers.get('cache-control'), 'no-cache');
  assert.notEqual(html.headers.get('etag'), etag);

  let r = await raw(srv.port, 'GET', '/app.js', { 'If-None-Match': etag });
  assert.equal(r.status, 304);
  assert.equal(r.body.length, 0);
  assert.equal(r.headers.etag, etag);
  r = await raw(srv.port, 'GET', '/app.js', { 'If-None-Match': `"nope", W/${etag}` });
  assert.equal(r.status, 304);
  r = await raw(srv.port, 'GET', '/app.js', { 'If-None-Match': '"other"' });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), FILES['app.js'][0]);

  const lm = js.headers.get('last-modified');
  assert.match(lm, /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  r = await raw(srv.port, 'GET', '/app.js', { 'If-Modified-Since': lm });
  assert.equal(r.status, 304);
  const before = new Date(Date.parse(lm) - 3600e3).toUTCString();
  r = await raw(srv.port, 'GET', '/app.js', { 'If-Modified-Since': before });
  assert.equal(r.status, 200);
  // If-None-Match wins over If-Modified-Since
  r = await raw(srv.port, 'GET', '/app.js', { 'If-None-Match': '"other"', 'If-Modified-Since': lm });
  assert.equal(r.status, 200);

  // a changed file gets a new tag
  writeFileSync(join(root, 'app.js'), 'console.log("v2")\n');
  r = await raw(srv.port, 'GET', '/app.js', { 'If-None-Match': etag });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'console.log("v2")\n');
  assert.notEqual(r.headers.etag, etag);
});

test('a file of several MB arrives whole', async () => {
  const { root } = makeTree();
  const big = randomBytes(6 * 1024 * 1024 + 123);
  writeFileSync(join(root, 'big.bin'), big);
  const srv = await start({ args: ['--public', root] });
  servers.push(srv);
  const gets = await Promise.all([1, 2, 3].map(() => fetch(srv.url + '/big.bin')));
  for (const r of gets) {
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-length'), String(big.length));
    const got = Buffer.from(await r.arrayBuffer());
    assert.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(big).digest('hex'));
  }
  const h = await raw(srv.port, 'HEAD', '/big.bin');
  assert.equal(h.headers['content-length'], String(big.length));
  assert.equal(h.body.length, 0);
});

test('traversal, encoded separators, hidden files and links out of the root are 404, with or without fallback', async () => {
  const { root } = makeTree();
  const hostname = readFileSync('/etc/hostname', 'utf8').trim();
  for (const fallback of ['true', 'false']) {
    const srv = await start({ args: ['--public', root, '--index-fallback', fallback] });
    servers.push(srv);
    const attempts = [
      '/../secret.txt', '/../../../../../../etc/hostname', '/sub/../../secret.txt', '/./../secret.txt',
      '/%2e%2e/secret.txt', '/%2E%2E/%2e%2e/etc/hostname', '/%2e%2e%2fsecret.txt', '/..%2fsecret.txt',
      '/..%2F..%2F..%2Fetc%2Fhostname', '/sub%2f..%2f..%2fsecret.txt', '/..%5csecret.txt', '/..\\secret.txt',
      '/sub\\..\\..\\secret.txt', '/%5c..%5csecret.txt', '/index.html%00', '/%00', '/secret.txt%00.html',
      '//etc/hostname', '/sub//page.html', '/%2fetc/hostname', '/.env', '/.git/config', '/sub/.env',
      '/%2eenv', '/out-link.txt', '/rel-out-link.txt', '/hostname', '/dir-link/page.html', '/dir-link/',
      '/pipe.txt', '/bad%zz', '/..', '/.',
    ];
    for (const p of attempts) {
      const r = await raw(srv.port, 'GET', p);
      assert.ok(r.status < 500, `${p}: ${r.status}`);
      const body = r.body.toString();
      assert.ok(!body.includes(SECRET), `${p} leaked the secret`);
      if (hostname) assert.ok(!body.includes(hostname) || body.includes('root index'), `${p} leaked /etc/hostname`);
      if (r.status === 301) continue; // only for the redirects checked below
      assert.equal(r.status, 404, `${p} (fallback ${fallback})`);
      assert.doesNotMatch(body, /root index/, `${p}: fell back to index.html`);
    }
    // .well-known is the one hidden name served
    const wk = await raw(srv.port, 'GET', '/.well-known/assetlinks.json');
    assert.equal(wk.status, 200);
    assert.equal(wk.body.toString(), '[]');
    // the server is still fine
    const ok = await raw(srv.port, 'GET', '/app.js');
    assert.equal(ok.status, 200);
  }
});

test('index fallback (default on): unknown paths get the root index.html; --index-fallback=false turns it off', async () => {
  const { root } = makeTree();
  const srv = await start({ args: ['--public', root] });
  servers.push(srv);
  for (const p of ['/dashboard', '/users/42/edit', '/missing.js', '/empty/', '/sub/missing']) {
    const r = await raw(srv.port, 'GET', p);
    assert.equal(r.status, 200, p);
    assert.equal(r.body.toString(), INDEX, p);
    assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(r.headers['cache-control'], 'no-cache');
  }
  const h = await raw(srv.port, 'HEAD', '/deep/link');
  assert.equal(h.status, 200);
  assert.equal(h.body.length, 0);
  // without a root index.html there is nothing to fall back to
  rmSync(join(root, 'index.html'));
  isJson404(await raw(srv.port, 'GET', '/dashboard'));
  isJson404(await raw(srv.port, 'GET', '/'));

  const off = await start({ args: ['--public', root], env: { TANDEM_INDEX_FALLBACK: 'off' } });
  servers.push(off);
  writeFileSync(join(root, 'index.html'), INDEX);
  isJson404(await raw(off.port, 'GET', '/dashboard'));
  assert.equal((await raw(off.port, 'GET', '/')).body.toString(), INDEX);
});

test('the API and the dashboard always win over files', async () => {
  const { root } = makeTree();
  const srv = await start({ args: ['--public', root] });
  servers.push(srv);
  let r = await raw(srv.port, 'GET', '/api/health');
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body.toString()).code, 200);
  for (const p of ['/api/x.txt', '/api/nope', '/api', '/api/', '/%61pi/x.txt', '/api/collections/x/nope/y']) {
    isJson404(await raw(srv.port, 'GET', p));
    isJson404(await raw(srv.port, 'POST', p, { 'Content-Length': '0' }));
  }
  // a route that exists with another method keeps its 405
  r = await raw(srv.port, 'DELETE', '/api/health');
  assert.equal(r.status, 405);
  r = await raw(srv.port, 'GET', '/_/');
  assert.equal(r.status, 200);
  assert.doesNotMatch(r.body.toString(), /shadow dashboard/);
  assert.match(r.body.toString(), /<title>tandem<\/title>/);
  r = await raw(srv.port, 'GET', '/_/no-such-asset.js');
  isJson404(r);
  // the SDK's own calls still work beside the files
  const c = await fetch(srv.url + '/api/collections/nope/records');
  assert.equal(c.status, 404);
  assert.equal((await c.json()).status, 404);
});

test('default: <dir>/../tandem_public when it exists; --public off or empty disables it; a missing --public stops the start', async () => {
  const top = tempDir('tandem-pubdef-');
  dirs.push(top);
  const data = join(top, 'data');
  mkdirSync(join(top, 'tandem_public'));
  writeFileSync(join(top, 'tandem_public', 'index.html'), INDEX);
  writeFileSync(join(top, 'tandem_public', 'hello.txt'), 'hi');

  let srv = await start({ dir: data });
  let r = await raw(srv.port, 'GET', '/hello.txt');
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'hi');
  assert.equal((await raw(srv.port, 'GET', '/')).body.toString(), INDEX);
  await srv.stop();

  for (const args of [['--public', ''], ['--public', 'off'], ['--public=']]) {
    srv = await start({ dir: data, args });
    isJson404(await raw(srv.port, 'GET', '/hello.txt'));
    isJson404(await raw(srv.port, 'GET', '/'));
    r = await raw(srv.port, 'POST', '/hello.txt', { 'Content-Length': '0' });
    assert.equal(r.status, 404); // without static hosting nothing answers 405 there
    await srv.stop();
  }
  srv = await start({ dir: data, env: { TANDEM_PUBLIC: '' } });
  isJson404(await raw(srv.port, 'GET', '/hello.txt'));
  await srv.stop();

  // no tandem_public beside the data directory: nothing served, no error
  rmSync(join(top, 'tandem_public'), { recursive: true });
  srv = await start({ dir: data });
  isJson404(await raw(srv.port, 'GET', '/'));
  await srv.stop();

  const res = await run(['serve', '--http', '127.0.0.1:0', '--dir', data, '--public', join(top, 'nope')]);
  assert.equal(res.code, 2);
  assert.match(res.stderr, /cannot open the public directory .*nope/);

  const help = await run(['help']);
  assert.match(help.stdout, /--public/);
  assert.match(help.stdout, /--index-fallback/);
});
