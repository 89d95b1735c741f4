// A full disk: the data directory (app.db, the log and the warehouse) lives on a 16 MiB tmpfs that
// holds a 6 MiB filler file. Capture requests are sent until the disk is full. From then on
// every answer is 200 or 503 with Retry-After (never a 200 for events that were not stored,
// never another 5xx, never a crash); reads and health keep working; record writes fail
// with 503 (not 500) and without a crash; a SIGKILL while full is followed by a restart on the
// still-full disk that works. Deleting the filler lets writes succeed again without a restart, batches
// that got 503 are accepted when retried (a failed append does not leave their ids in the
// dedup set), and every acknowledged event is in the log exactly once.
//
// Needs root (or a user namespace) to mount the tmpfs. It fails, rather than skips, when the
// mount is impossible, so CI cannot pass it silently.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SU_EMAIL, SU_PASSWORD, createSuperuser } from '../integration/lib/pb.mjs';
import { Restartable, basic, logCheck, request, sleep, writeKey } from './lib.mjs';

const TMPFS_SIZE = '16m';
const FILLER_BYTES = 6 << 20; // room for the log and the warehouse (which loads what the log accepted) once freed

function mountTmpfs() {
  const mnt = mkdtempSync(join(tmpdir(), 'tandem-crash-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_SIZE}`, 'tmpfs', mnt], { stdio: 'pipe' });
  } catch (e) {
    rmdirSync(mnt);
    assert.fail(`disk_full needs to mount a ${TMPFS_SIZE} tmpfs (run as root): ${e.stderr || e.message}`);
  }
  return mnt;
}

function unmount(mnt) {
  try {
    execFileSync('umount', [mnt], { stdio: 'pipe' });
    rmdirSync(mnt);
  } catch (e) {
    console.log(`disk_full: cannot unmount ${mnt}: ${e.stderr || e.message}`);
  }
}

test('a full disk gives 503 + Retry-After, no loss, and recovers when space returns', { timeout: 60000 }, async () => {
  const mnt = mountTmpfs();
  let server;
  try {
    const dir = join(mnt, 'data');
    mkdirSync(dir);
    const filler = join(mnt, 'filler');
    writeFileSync(filler, Buffer.alloc(FILLER_BYTES, 0x55));
    await createSuperuser(dir);
    const key = await writeKey(dir, 'full');
    server = new Restartable(dir);
    await server.start();
    let url = server.url;
    const signIn = await request(`${url}/api/collections/_superusers/auth-with-password`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ identity: SU_EMAIL, password: SU_PASSWORD }),
    });
    assert.equal(signIn.status, 200, signIn.body);
    const token = JSON.parse(signIn.body).token;
    const su = { 'Content-Type': 'application/json', Authorization: token };
    const made = await request(`${url}/api/collections`, { method: 'POST', headers: su, body: JSON.stringify({ name: 'notes', type: 'base', fields: [{ name: 'n', type: 'number' }] }) });
    assert.equal(made.status, 200, made.body);

    const acked = new Set();
    const refused = []; // batches answered 503, to retry once space returns
    let nextBatch = 0;
    const pad = 'p'.repeat(900);
    const makeBatch = (n) => {
      const b = nextBatch++;
      return Array.from({ length: n }, (_, i) => ({ type: 'track', event: 'Fill', userId: 'u', messageId: `b${b}-e${i}`, properties: { pad } }));
    };
    const send = async (batch) => {
      const res = await request(`${url}/v1/batch`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: basic(key) }, body: JSON.stringify({ batch }) });
      assert.ok(!res.error, `no answer: ${res.error}`);
      if (res.status === 200) {
        for (const e of batch) acked.add(e.messageId);
      } else {
        assert.equal(res.status, 503, `only 200 or 503 may answer a capture request: ${res.status} ${res.body}`);
        assert.ok(Number(res.headers.get('retry-after')) > 0, '503 without Retry-After');
      }
      return res.status;
    };

    // 1. fill the disk; keep going a little after the first refusal
    let refusals = 0;
    let firstRefusal = -1;
    for (let i = 0; i < 400 && refusals < 10; i++) {
      const batch = makeBatch(50);
      if ((await send(batch)) === 503) {
        refusals++;
        if (firstRefusal < 0) firstRefusal = i;
        refused.push(batch);
      }
    }
    assert.ok(refusals >= 10, `the disk never filled (${acked.size} events accepted)`);
    // smaller batches while full: still only 200 or 503
    for (let i = 0; i < 10; i++) {
      const batch = makeBatch(1);
      if ((await send(batch)) === 503) refused.push(batch);
    }
    console.log(`disk_full: first 503 after ${firstRefusal} batches, ${acked.size} events accepted before and while full`);

    // 2. while full: the server is alive, reads work, record writes fail without a crash
    assert.equal((await request(`${url}/api/health`)).status, 200);
    assert.equal((await request(`${url}/api/log/events?from=0&limit=1`, { headers: su })).status, 200);
    assert.equal((await request(`${url}/api/collections/notes/records`, { headers: su })).status, 200);
    const fullWrite = await request(`${url}/api/collections/notes/records`, { method: 'POST', headers: su, body: JSON.stringify({ id: 'fullxxxxxxxxxxx', n: 1 }) });
    console.log(`disk_full: record create while full: ${fullWrite.status} ${fullWrite.body} retry-after=${fullWrite.headers?.get('retry-after')}`);
    assert.ok(fullWrite.status === 200 || fullWrite.status === 503, `record write on a full disk: ${fullWrite.status} ${fullWrite.body}`);
    assert.equal(server.srv.proc.exitCode, null, 'the server died');

    // 3. a crash while the disk is full, and a restart on the still-full disk
    await server.kill();
    await server.start(); // recovery must not need free space
    url = server.url;
    for (let i = 0; i < 3; i++) {
      const batch = makeBatch(5);
      if ((await send(batch)) === 503) refused.push(batch);
    }
    assert.equal((await request(`${url}/api/health`)).status, 200);

    // 4. free space: writes succeed again without a restart, the refused batches included
    rmSync(filler);
    for (const batch of refused) assert.equal(await send(batch), 200, 'a refused batch was not accepted after space returned');
    for (let i = 0; i < 5; i++) assert.equal(await send(makeBatch(20)), 200);
    const after = await request(`${url}/api/collections/notes/records`, { method: 'POST', headers: su, body: JSON.stringify({ id: 'afterxxxxxxxxxx', n: 2 }) });
    assert.equal(after.status, 200, after.body);
    if (fullWrite.status !== 200) {
      const again = await request(`${url}/api/collections/notes/records`, { method: 'POST', headers: su, body: JSON.stringify({ id: 'fullxxxxxxxxxxx', n: 1 }) });
      assert.equal(again.status, 200, again.body);
    }

    // 4. every acknowledged event is in the log exactly once
    const seen = new Map();
    for (let from = 0; ;) {
      const page = await request(`${url}/api/log/events?from=${from}&limit=1000`, { headers: su });
      assert.equal(page.status, 200, page.body);
      const p = JSON.parse(page.body);
      for (const r of p.records) seen.set(r.value.messageId, (seen.get(r.value.messageId) || 0) + 1);
      if (p.records.length === 0 || p.nextOffset >= p.endOffset) break;
      from = p.nextOffset;
    }
    assert.deepEqual([...acked].filter((id) => !seen.has(id)), [], 'acknowledged events missing');
    assert.deepEqual([...seen].filter(([, n]) => n > 1).map(([id]) => id), [], 'events logged twice');
    assert.equal(seen.size, acked.size, 'events in the log that were never acknowledged');

    // 5. both record writes reach the changes topic once the relay runs
    let changes = [];
    for (let t = 0; t < 100; t++) {
      const page = await request(`${url}/api/log/changes?from=0&limit=1000`, { headers: su });
      if (page.status === 200) changes = JSON.parse(page.body).records.map((r) => r.value.recordId);
      if (changes.includes('afterxxxxxxxxxx') && changes.includes('fullxxxxxxxxxxx')) break;
      await sleep(20);
    }
    assert.deepEqual(changes.filter((id) => id === 'fullxxxxxxxxxxx' || id === 'afterxxxxxxxxxx').sort(), ['afterxxxxxxxxxx', 'fullxxxxxxxxxxx']);

    await server.stop();
    server = null;
    await logCheck(dir);
  } finally {
    if (server) await server.srv.stop('SIGKILL');
    unmount(mnt);
  }
});
