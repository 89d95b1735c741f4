// The warehouse under a deliberately small memory limit (--warehouse-memory 64MiB, the least
// allowed): a query that needs more either spills to DuckDB's temporary directory and answers,
// or fails with a 400 in PocketBase's envelope that says so; never an out-of-memory kill. The
// server stays up and answers the next query and an insight, and its peak RSS stays within
// the limit plus 256 MiB.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startWithSuperuser } from './lib/pb.mjs';

const LIMIT_MIB = 64;
let srv, token;

before(async () => {
  let pb;
  ({ srv, pb } = await startWithSuperuser({ args: ['--warehouse-memory', `${LIMIT_MIB}MiB`] }));
  token = pb.authStore.token;
});
after(async () => { await srv?.stop(); });

async function post(path, body) {
  const res = await fetch(`${srv.url}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: token },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: JSON.parse(text), text };
}

const sql = (query) => post('/api/warehouse/sql', { query });

function alive() {
  assert.equal(srv.proc.exitCode, null, `server exited: ${srv.stderr()}`);
  assert.equal(srv.proc.signalCode, null, `server killed: ${srv.stderr()}`);
}

function peakRssMiB() {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8'));
  return Number(m[1]) / 1024;
}

test('a result that cannot fit in the memory limit is a 400 that says so', async () => {
  // one list of 50M BIGINTs (400 MB) cannot be spilled
  const r = await sql('SELECT length(list(i)) FROM range(50000000) t(i)');
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.status, 400);
  assert.equal(r.json.message, 'The query needs more memory than the warehouse allows.');
  assert.match(r.json.data.detail, /more memory than the warehouse's memory limit/);
  alive();
});

test('a sort larger than the memory limit spills and answers, or is a 400', async () => {
  const r = await sql('SELECT count(*) AS n, sum(i) AS s FROM (SELECT i FROM range(20000000) t(i) ORDER BY hash(i))');
  if (r.status === 200) {
    assert.deepEqual(r.json.rows, [[20000000, 199999990000000]]);
  } else {
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.message, 'The query needs more memory than the warehouse allows.');
  }
  alive();
});

test('a large aggregate spills and answers, or is a 400', async () => {
  const r = await sql('SELECT count(*) FROM (SELECT i % 5000000 AS g, count(*) FROM range(20000000) t(i) GROUP BY g)');
  if (r.status === 200) assert.deepEqual(r.json.rows, [[5000000]]);
  else assert.equal(r.json.message, 'The query needs more memory than the warehouse allows.', r.text);
  alive();
});

test('the server stays up: the next query and an insight answer', async () => {
  const r = await sql('SELECT 41 + 1 AS n');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.rows, [[42]]);
  const ins = await post('/api/insights/retention', {
    targetEvent: { event: 'pageview' },
    returningEvent: { event: 'pageview' },
    period: 'week',
    totalIntervals: 4,
  });
  assert.equal(ins.status, 200, ins.text);
  alive();
});

// An AddressSanitizer build's RSS holds shadow memory and freed blocks in quarantine: the
// bound is about tandem's allocations, so it is checked on plain builds only.
const rssSkip = process.platform !== 'linux' ? 'needs /proc'
  : process.env.TANDEM_SANITIZE ? `sanitizer build (${process.env.TANDEM_SANITIZE}): its RSS is not tandem's own` : false;
test('peak RSS stays within the memory limit plus 256 MiB', { skip: rssSkip }, () => {
  const peak = peakRssMiB();
  assert.ok(peak <= LIMIT_MIB + 256, `peak RSS ${peak.toFixed(0)} MiB over ${LIMIT_MIB} + 256 MiB`);
});
