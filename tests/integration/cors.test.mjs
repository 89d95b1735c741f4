// CORS as PocketBase answers it: Access-Control-Allow-Origin on every route for a page of any
// origin (or of the --origins list), and preflights (OPTIONS) answered 204 by the server
// before any handler or rate limit, for the record API and every capture endpoint, so
// analytics.js and posthog-js work from any page.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { start } from './lib/server.mjs';

const servers = [];
after(async () => {
  for (const s of servers) await s.stop();
});

async function preflight(url, origin, method = 'POST', headers = 'content-type,authorization') {
  const r = await fetch(url, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': headers },
  });
  await r.text();
  return r;
}

const PATHS = ['/api/collections/posts/records', '/api/collections/users/auth-with-password', '/api/realtime',
  '/v1/batch', '/v1/track', '/e/', '/batch/', '/i/v0/e/', '/capture/', '/api/no/such/route'];

test('any origin by default: preflights 204 with methods and headers, responses carry the origin header', async () => {
  const srv = await start({ args: ['--ratelimit', 'default=1/1h'] });
  servers.push(srv);
  for (const p of PATHS) {
    const r = await preflight(srv.url + p, 'https://app.example.com');
    assert.equal(r.status, 204, p);
    assert.equal(r.headers.get('access-control-allow-origin'), '*', p);
    assert.match(r.headers.get('access-control-allow-methods'), /POST/);
    assert.match(r.headers.get('access-control-allow-methods'), /PATCH/);
    assert.equal(r.headers.get('access-control-allow-headers'), 'content-type,authorization');
  }
  // preflights never count against the rate limit (one request an hour): this one is the first
  const r = await fetch(srv.url + '/api/health', { headers: { Origin: 'https://app.example.com' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('access-control-allow-origin'), '*');
  // errors carry it too, so the page can read them
  const e = await fetch(srv.url + '/api/health', { headers: { Origin: 'https://other.example.com' } });
  assert.equal(e.status, 429);
  assert.equal(e.headers.get('access-control-allow-origin'), '*');
  // no Origin: no CORS headers
  const plain = await fetch(srv.url + '/api/collections/posts/records', { method: 'OPTIONS' });
  assert.equal(plain.status, 204);
  assert.equal(plain.headers.get('access-control-allow-origin'), null);
});

test('--origins restricts the origins that get the header', async () => {
  const srv = await start({ args: ['--origins', 'https://app.example.com, http://localhost:5173'] });
  servers.push(srv);
  let r = await preflight(srv.url + '/api/collections/posts/records', 'http://localhost:5173');
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('access-control-allow-origin'), 'http://localhost:5173');
  assert.match(r.headers.get('vary'), /Origin/);
  r = await preflight(srv.url + '/api/collections/posts/records', 'https://evil.example.com');
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('access-control-allow-origin'), null);
  r = await fetch(srv.url + '/api/health', { headers: { Origin: 'https://app.example.com' } });
  assert.equal(r.headers.get('access-control-allow-origin'), 'https://app.example.com');
  r = await fetch(srv.url + '/api/health', { headers: { Origin: 'https://evil.example.com' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('access-control-allow-origin'), null);
});

test('an empty --origins list is refused at start', async () => {
  await assert.rejects(start({ args: ['--origins', ' , '] }), /invalid value for --origins/);
});
