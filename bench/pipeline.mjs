// Measurements for bench/pipeline.sh against a running tandem (node >= 18, no packages).
//
//   node bench/pipeline.mjs load URL EVENTS
//     Polls /api/pipeline every 100 ms until the events consumer committed EVENTS records;
//     prints rows/s from the first poll to that point, and the rate per interval.
//   node bench/pipeline.mjs fresh URL WRITEKEY RATE SECONDS
//     Sends RATE events/s as /v1/batch requests of 100 events (~500 bytes each) for SECONDS,
//     paced every 5 ms. The first event of every 10th batch is a sample: from its batch's 200
//     until a SQL API query (SELECT id FROM events WHERE id IN (...pending samples), run back
//     to back) returns it. Prints the achieved rate and freshness p50/p90/p99/max.
// Superuser credentials: SU_EMAIL, SU_PASSWORD.
const [mode, url, ...rest] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function signIn() {
  const r = await fetch(`${url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ identity: process.env.SU_EMAIL, password: process.env.SU_PASSWORD }),
  });
  if (r.status !== 200) throw new Error(`sign-in: ${r.status} ${await r.text()}`);
  return (await r.json()).token;
}

async function status(token) {
  const r = await fetch(`${url}/api/pipeline`, { headers: { Authorization: token } });
  if (r.status !== 200) throw new Error(`/api/pipeline: ${r.status}`);
  return Object.fromEntries((await r.json()).consumers.map((c) => [c.topic, c]));
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function load(n) {
  const token = await signIn();
  let first = null;
  let last = null;
  const steps = [];
  for (;;) {
    const ev = (await status(token)).events;
    const now = performance.now();
    if (ev.lastError) console.log(`loader error: ${ev.lastError}`);
    if (!first) first = { t: now, c: ev.committedOffset };
    if (!last || now - last.t >= 5000 || ev.committedOffset >= n) {
      if (last) steps.push(Math.round(((ev.committedOffset - last.c) * 1000) / (now - last.t)));
      last = { t: now, c: ev.committedOffset };
    }
    if (ev.committedOffset >= n) {
      const secs = (now - first.t) / 1000;
      const rows = ev.committedOffset - first.c;
      console.log(`loaded ${rows} rows (of ${n}; ${first.c} before the first poll) in ${secs.toFixed(1)} s = ${Math.round(rows / secs)} rows/s`);
      console.log(`rows/s per 5 s interval: ${steps.join(' ')}`);
      console.log(`RESULT load_rows_per_s ${Math.round(rows / secs)}`);
      return;
    }
    await sleep(100);
  }
}

async function fresh(key, rate, seconds) {
  const token = await signIn();
  const auth = 'Basic ' + Buffer.from(`${key}:`).toString('base64');
  const PER = 100;
  const pad = 'x'.repeat(120);
  let batchNo = 0;
  const pending = new Map(); // sample id -> time its batch was acknowledged
  const freshness = [];
  let sentEvents = 0;
  let errors = 0;
  let inflight = 0;
  let stop = false;

  function batchBody(b) {
    const ts = new Date().toISOString();
    const batch = [];
    for (let i = 0; i < PER; i++) {
      batch.push({
        type: 'track', event: 'Product Viewed', userId: `user_${(b * 31 + i) % 5000}`, messageId: `fresh-${b}-${i}`, timestamp: ts,
        properties: { product_id: `sku-${i}`, category: 'Games', price: 19.99, quantity: 1, currency: 'EUR', note: pad },
        context: { library: { name: 'bench', version: '1.0' }, ip: '203.0.113.7', page: { path: `/p/${i}` } },
      });
    }
    return JSON.stringify({ batch, sentAt: ts });
  }

  async function send(b) {
    inflight++;
    const body = batchBody(b);
    try {
      const r = await fetch(`${url}/v1/batch`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: auth }, body });
      await r.arrayBuffer();
      if (r.status !== 200) errors++;
      else {
        sentEvents += PER;
        if (b % 10 === 0) pending.set(`fresh-${b}-0`, performance.now());
      }
    } catch {
      errors++;
    } finally {
      inflight--;
    }
  }

  async function prober() {
    while (!stop || pending.size) {
      if (pending.size === 0) { await sleep(1); continue; }
      const ids = [...pending.keys()];
      const r = await fetch(`${url}/api/warehouse/sql`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: token },
        body: JSON.stringify({ query: `SELECT id FROM events WHERE id IN (${ids.map((_, i) => `$${i + 1}`).join(',')})`, params: ids }),
      });
      const j = await r.json();
      if (r.status !== 200) throw new Error(`sql: ${JSON.stringify(j)}`);
      const now = performance.now();
      for (const [id] of j.rows) {
        if (pending.has(id)) {
          freshness.push(now - pending.get(id));
          pending.delete(id);
        }
      }
    }
  }

  const probe = prober();
  const t0 = performance.now();
  const interval = 5; // ms
  const perTick = (rate * interval) / 1000 / PER; // batches per tick (fractional)
  let owed = 0;
  while (performance.now() - t0 < seconds * 1000) {
    const due = ((performance.now() - t0) / interval) * perTick;
    while (owed < due) {
      if (inflight < 256) send(batchNo++);
      else errors++;
      owed++;
    }
    await sleep(interval);
  }
  const sendSecs = (performance.now() - t0) / 1000;
  while (inflight > 0) await sleep(5);
  stop = true;
  await probe;
  freshness.sort((a, b) => a - b);
  const st = await status(token);
  console.log(`sent ${sentEvents} events in ${sendSecs.toFixed(1)} s = ${Math.round(sentEvents / sendSecs)} events/s acknowledged (target ${rate}); ${errors} failed or skipped batches`);
  console.log(`freshness over ${freshness.length} samples: p50 ${pct(freshness, 50).toFixed(0)} ms, p90 ${pct(freshness, 90).toFixed(0)} ms, p99 ${pct(freshness, 99).toFixed(0)} ms, max ${freshness[freshness.length - 1].toFixed(0)} ms`);
  console.log(`events consumer: ${st.events.batches} batches, ${st.events.rowsLoaded} rows, lag ${st.events.lagRecords}`);
  console.log(`RESULT fresh_events_per_s ${Math.round(sentEvents / sendSecs)} p50_ms ${pct(freshness, 50).toFixed(0)} p99_ms ${pct(freshness, 99).toFixed(0)}`);
}

if (mode === 'load') await load(Number(rest[0]));
else if (mode === 'fresh') await fresh(rest[0], Number(rest[1]), Number(rest[2]));
else {
  console.error('usage: pipeline.mjs load URL EVENTS | fresh URL WRITEKEY RATE SECONDS');
  process.exit(2);
}
