// Shared pieces of the crash tests: a seeded PRNG, a server handle that survives restarts,
// and readers of the log (offline with `tandem log dump`, and `tandem log check`).
import assert from 'node:assert/strict';
import { run, start } from '../integration/lib/server.mjs';

// mulberry32: small, seedable, good enough to pick kill moments and batch sizes.
export function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)); // inclusive
  return next;
}

// The seed: CRASH_SEED when set (to replay a failure), else fresh. Printed so a failure can
// be reproduced with CRASH_SEED=<seed>.
export function seedFromEnv(name) {
  const s = process.env.CRASH_SEED ? Number(process.env.CRASH_SEED) : (Date.now() ^ (process.pid << 16)) >>> 0;
  console.log(`${name}: seed ${s} (replay with CRASH_SEED=${s})`);
  return s;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const basic = (key) => 'Basic ' + Buffer.from(`${key}:`).toString('base64');

export async function writeKey(dir, name) {
  const r = await run(['writekey', 'create', name, '--dir', dir]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

// A server on a fixed data directory that is killed and restarted; clients read `url` for
// every request and wait while it is null.
export class Restartable {
  constructor(dir, args = []) {
    this.dir = dir;
    this.args = args;
    this.srv = null;
    this.url = null;
    this.starts = 0;
    this.up = null; // resolves when the current start finished
  }

  async start() {
    this.srv = await start({ dir: this.dir, args: this.args, keepDir: true });
    this.url = this.srv.url;
    this.starts++;
    return this.srv;
  }

  // SIGKILL, wait for the exit, and check the process really died of the signal.
  async kill() {
    const srv = this.srv;
    this.url = null;
    const r = await srv.stop('SIGKILL');
    assert.equal(r.signal, 'SIGKILL', `server exited by itself before the kill: ${JSON.stringify(r)} ${srv.stderr()}`);
    this.srv = null;
  }

  async stop() {
    const srv = this.srv;
    this.url = null;
    this.srv = null;
    if (!srv) return null;
    const r = await srv.stop('SIGTERM');
    assert.equal(r.code, 0, `server did not stop cleanly: ${JSON.stringify(r)} ${srv.stderr()}`);
    return r;
  }

  // Waits until the server is up; returns its url.
  async waitUrl() {
    while (!this.url) await sleep(5);
    return this.url;
  }
}

// Every record of a topic, read offline (the server must be stopped): [{offset, timestamp, value}].
export async function dumpTopic(dir, topic) {
  const r = await run(['log', 'dump', topic, '--dir', dir]);
  assert.equal(r.code, 0, `log dump ${topic} failed: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
}

// `tandem log check` must find nothing wrong.
export async function logCheck(dir) {
  const r = await run(['log', 'check', '--dir', dir]);
  assert.equal(r.code, 0, `log check found problems:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

// fetch with a deadline; resolves to {status, headers, body} or {error}.
export async function request(url, init = {}, timeoutMs = 5000) {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    const body = await res.text();
    return { status: res.status, headers: res.headers, body };
  } catch (e) {
    return { error: e };
  }
}

// Kills the server with SIGKILL at random moments (waits of minMs..maxMs from rand) and
// restarts it on the same directory, at least `kills` times and, while moreWanted() says a
// kill has not yet cut a request in flight, up to twice as many. Then lets traffic run 200 ms
// more, tells the clients to stop (stop()), and waits for them. Returns the waits used.
export async function killLoop({ server, rand, kills, minMs, maxMs, moreWanted = () => false, clients, stop }) {
  const moments = [];
  try {
    for (let k = 0; k < kills || (moreWanted() && k < 2 * kills); k++) {
      const wait = rand.int(minMs, maxMs);
      moments.push(wait);
      await sleep(wait);
      await server.kill();
      await sleep(rand.int(0, 50));
      await server.start();
    }
    await sleep(200); // some traffic after the last restart
  } finally {
    stop();
    await Promise.all(clients);
  }
  return moments;
}
