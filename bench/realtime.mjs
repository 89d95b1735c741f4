// Load client of bench/realtime.sh (node >= 18, no packages). Against a running tandem:
//
//   node bench/realtime.mjs
//
// Environment: TANDEM_URL, TANDEM_PID, TOKEN (a superuser's), USER_TOKEN and USER_ID (the
// user half of the subscribers authenticates as), CLIENTS (10000), WORKERS (2), RATE
// (records/s, 40), DURATION (s, 20), DRAIN (s to wait for the last deliveries, 15), PROBES
// (50 of the CLIENTS streams in a process of their own), CLK_TCK.
//
// The main process forks WORKERS copies of itself; each opens its share of the SSE streams
// over raw sockets (HTTP/1.1, chunked, minimal SSE parsing), half as guests and half with
// USER_TOKEN, and POSTs `posts/*` for each. Once every worker has all its streams subscribed
// (every POST answered 204), the main process creates RATE records/s for DURATION s as the
// superuser: record n has owner = USER_ID when n is even, another value when odd, and
// t = Date.now() at the request. The workers count each client's deliveries by n and the
// latency Date.now() - t of every delivery, taken when the socket's data arrives. While it
// runs, the main process samples tandem's VmRSS every 100 ms and its utime + stime.
// Prints the figures and RESULT lines; exits 1 if any guest missed a record or got one
// twice, or any user stream missed one of its records, got one twice or got a hidden one.
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const env = process.env;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const HIST_MAX = 120000; // latency histogram: 1 ms bins up to 120 s, then one overflow bin

// ---- worker: FIRST..FIRST+COUNT-1 of the clients; even index = guest, odd = user ----

async function worker() {
  process.on('disconnect', () => process.exit(3)); // the main process is gone
  const u = new URL(env.TANDEM_URL);
  const host = u.hostname;
  const port = +u.port;
  const first = +env.FIRST;
  const count = +env.COUNT;
  const nrec = +env.NREC; // records the writer will create (counts sized for them)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const hist = new Uint32Array(HIST_MAX + 1); // from the create request (t)
  const histC = new Uint32Array(HIST_MAX + 1); // from the commit (the record's `created`)
  const createdMs = new Float64Array(nrec).fill(NaN); // parsed once per record
  const clients = [];
  let received = 0;
  let closed = 0;
  let bad = 0; // messages that could not be parsed
  let measuring = false; // only deliveries of the writer's records are counted

  function post(cl) {
    return new Promise((resolve, reject) => {
      const body = JSON.stringify({ clientId: cl.id, subscriptions: ['posts/*'] });
      const headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
      if (cl.user) headers.Authorization = env.USER_TOKEN;
      const req = http.request({ host, port, path: '/api/realtime', method: 'POST', agent, headers }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 204 ? resolve() : reject(new Error(`POST /api/realtime: ${res.statusCode}`))));
      });
      req.setTimeout(60000, () => req.destroy(new Error('POST /api/realtime timed out')));
      req.on('error', reject);
      req.end(body);
    });
  }

  // One SSE message (without its final blank line).
  function message(cl, m, now) {
    const d = m.indexOf('\ndata:');
    if (d < 0) { bad++; return; }
    if (!cl.id) {
      const k = m.indexOf('"clientId":"', d);
      if (k < 0) { bad++; return; }
      cl.id = m.slice(k + 12, m.indexOf('"', k + 12));
      cl.onConnect();
      return;
    }
    if (m.charCodeAt(0) === 58 /* ':' keep-alive comment */) return;
    const kn = m.indexOf('"n":', d);
    const kt = m.indexOf('"t":', d);
    if (kn < 0 || kt < 0) { bad++; return; }
    const n = parseInt(m.slice(kn + 4, kn + 24), 10);
    const t = parseInt(m.slice(kt + 4, kt + 24), 10);
    if (!(n >= 0 && n < nrec)) { bad++; return; }
    cl.got[n]++;
    received++;
    const lat = now - t;
    hist[lat < 0 ? 0 : lat > HIST_MAX ? HIST_MAX : lat]++;
    let c = createdMs[n];
    if (c !== c) {
      const kc = m.indexOf('"created":"', d);
      c = createdMs[n] = kc < 0 ? t : Date.parse(m.slice(kc + 11, kc + 35).replace(' ', 'T'));
    }
    const latc = Math.round(now - c);
    histC[latc < 0 ? 0 : latc > HIST_MAX ? HIST_MAX : latc]++;
  }

  // Chunked transfer decoding, then SSE messages split on blank lines.
  function onData(cl, buf) {
    const now = Date.now();
    let s = buf.toString('latin1');
    if (!cl.head) {
      s = cl.pend + s;
      cl.pend = '';
      const e = s.indexOf('\r\n\r\n');
      if (e < 0) { cl.pend = s; return; }
      const status = s.slice(9, 12);
      if (status !== '200') { cl.fail(new Error(`GET /api/realtime: ${s.slice(0, s.indexOf('\r\n'))}`)); return; }
      cl.head = true;
      cl.chunked = /\r\ntransfer-encoding:\s*chunked/i.test(s.slice(0, e));
      s = s.slice(e + 4);
    }
    let body = '';
    if (!cl.chunked) body = s;
    else {
      s = cl.raw + s;
      cl.raw = '';
      let p = 0;
      while (p < s.length) {
        if (cl.left === 0) {
          const e = s.indexOf('\r\n', p);
          if (e < 0) { cl.raw = s.slice(p); break; }
          if (e === p) { p += 2; continue; } // the CRLF after a chunk's data
          cl.left = parseInt(s.slice(p, e), 16);
          p = e + 2;
          if (cl.left === 0) { cl.left = -1; break; } // the last chunk: the stream ended
          continue;
        }
        if (cl.left < 0) break;
        const take = Math.min(cl.left, s.length - p);
        body += s.slice(p, p + take);
        p += take;
        cl.left -= take;
      }
    }
    if (!body) return;
    const t = cl.pend ? cl.pend + body : body;
    let p = 0;
    for (;;) {
      const e = t.indexOf('\n\n', p);
      if (e < 0) break;
      message(cl, t.slice(p, e), now);
      p = e + 2;
    }
    cl.pend = p < t.length ? t.slice(p) : '';
  }

  function open(i) {
    return new Promise((resolve, reject) => {
      const cl = { i, user: i % 2 === 1, id: null, head: false, chunked: false, raw: '', pend: '', left: 0, got: null, sock: null };
      let done = false;
      cl.fail = (e) => { if (!done) { done = true; reject(e); } };
      cl.onConnect = () => {
        post(cl).then(() => { done = true; resolve(cl); }, cl.fail);
      };
      const sock = net.connect({ host, port });
      cl.sock = sock;
      sock.setNoDelay(true);
      sock.on('connect', () => sock.write(`GET /api/realtime HTTP/1.1\r\nHost: ${u.host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`));
      sock.on('data', (b) => onData(cl, b));
      sock.on('error', (e) => cl.fail(e));
      sock.on('close', () => { closed++; cl.fail(new Error('stream closed before it was subscribed')); });
      setTimeout(() => cl.fail(new Error('no PB_CONNECT and 204 within 120 s')), 120000).unref();
    });
  }

  // Opens the streams, at most 128 connecting at once.
  let next = first;
  const end = first + count;
  async function opener() {
    while (next < end) {
      const i = next++;
      clients.push(await open(i));
    }
  }
  const t0 = Date.now();
  try {
    await Promise.all(Array.from({ length: 128 }, opener));
  } catch (e) {
    process.send({ type: 'error', message: `worker ${env.WORKER}: ${e.message} (${clients.length} of ${count} subscribed)` });
    await sleep(200);
    process.exit(1);
  }
  for (const cl of clients) cl.got = new Uint8Array(nrec);
  agent.destroy();
  closed = 0;
  process.send({ type: 'ready', ms: Date.now() - t0 });

  const cpu0 = process.cpuUsage();
  process.on('message', (msg) => {
    if (msg.type === 'start') { measuring = true; process.send({ type: 'start' }); }
    else if (msg.type === 'progress') process.send({ type: 'progress', received, closed });
    else if (msg.type === 'finish') {
      const cpu = process.cpuUsage(cpu0);
      // correctness: guests get every n once; users every even n once and no odd n
      const errs = [];
      let guestGot = 0, userGot = 0, nGuest = 0, nUser = 0;
      for (const cl of clients) {
        let missing = 0, dup = 0, hidden = 0, got = 0;
        for (let n = 0; n < msg.nrec; n++) {
          const c = cl.got[n];
          got += c;
          const visible = msg.made[n] && (!cl.user || n % 2 === 0);
          if (visible) { if (c === 0) missing++; else if (c > 1) dup++; }
          else if (c > 0) hidden++; // (a record not created cannot arrive)
        }
        if (cl.user) { nUser++; userGot += got; } else { nGuest++; guestGot += got; }
        if (missing || dup || hidden)
          errs.push(`${cl.user ? 'user' : 'guest'} stream ${cl.i}: ${missing} missing, ${dup} twice, ${hidden} hidden ones received`);
      }
      process.send({
        type: 'result', guestGot, userGot, nGuest, nUser, bad, closed,
        errors: errs.length, examples: errs.slice(0, 5), hist: Array.from(hist), histC: Array.from(histC),
        cpuUs: cpu.user + cpu.system,
      });
      for (const cl of clients) cl.sock.destroy();
      setTimeout(() => process.exit(0), 100);
    }
  });
  void measuring;
}

// ---- main: workers, the writer, tandem's RSS and CPU ----

function procStat(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return +f[11] + +f[12]; // utime + stime (fields 14 and 15), in clock ticks
}
function procStatus(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'latin1');
  const kb = (k) => +(s.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) || [0, 0])[1];
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), threads: kb('Threads') };
}
const mib = (kb) => (kb / 1024).toFixed(0);

function pctHist(hist, total, p) {
  const want = Math.ceil((p / 100) * total);
  let acc = 0;
  for (let i = 0; i < hist.length; i++) {
    acc += hist[i];
    if (acc >= want) return i;
  }
  return hist.length - 1;
}

async function metrics() {
  const r = await fetch(`${env.TANDEM_URL}/metrics`, { headers: { Authorization: env.TOKEN } });
  const text = await r.text();
  const get = (name) => +((text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm')) || [0, NaN])[1]);
  return { deliveries: get('tandem_realtime_deliveries_total'), dropped: get('tandem_realtime_dropped_clients_total'), clients: get('tandem_realtime_clients'), groups: get('tandem_realtime_subscription_groups') };
}

async function main() {
  const clients = +(env.CLIENTS || 10000);
  const nw = +(env.WORKERS || 2);
  const probes = Math.min(+(env.PROBES ?? 50), clients);
  const rate = +(env.RATE || 40);
  const seconds = +(env.DURATION || 20);
  const drain = +(env.DRAIN || 15);
  const hz = +(env.CLK_TCK || 100);
  const pid = +env.TANDEM_PID;
  const nrec = Math.round(rate * seconds);
  const nGuest = Math.ceil(clients / 2), nUser = Math.floor(clients / 2);

  const st0 = procStatus(pid);
  console.log(`tandem before the streams: RSS ${mib(st0.rss)} MiB, ${st0.threads} threads`);
  // WORKERS processes share the streams but the last PROBES; those are the probe process's,
  // whose event loop stays idle: its latency is the server's, without the load client's lag
  const workers = [];
  let finishing = false;
  const spawn = (w, first, count) => {
    const cp = fork(fileURLToPath(import.meta.url), ['worker'], {
      env: { ...env, WORKER: String(w), FIRST: String(first), COUNT: String(count), NREC: String(nrec) },
    });
    cp.on('exit', (code, sig) => {
      if (finishing && code === 0) return;
      console.error(`ERROR: client process ${w} exited (${sig || code}) before the end`);
      process.exit(1);
    });
    workers.push(cp);
  };
  const bulk = clients - probes;
  const per = Math.ceil(bulk / nw);
  for (let w = 0; w < nw; w++) spawn(w, w * per, Math.min(per, bulk - w * per));
  if (probes) spawn(nw, bulk, probes);
  const ask = (type, extra = {}) => Promise.all(workers.map((cp) => new Promise((resolve, reject) => {
    const on = (msg) => {
      if (msg.type === 'error') { cp.off('message', on); reject(new Error(msg.message)); }
      else if (msg.type === want) { cp.off('message', on); resolve(msg); }
    };
    const want = type === 'wait-ready' ? 'ready' : type === 'finish' ? 'result' : type;
    cp.on('message', on);
    if (type !== 'wait-ready') cp.send({ type, ...extra });
  })));
  const tc0 = Date.now();
  const ready = await ask('wait-ready');
  const connectS = (Date.now() - tc0) / 1000;
  await sleep(1000); // let the server settle: the figure below is 10k idle streams
  const held = procStatus(pid);
  const m0 = await metrics();
  console.log(`${clients} streams subscribed in ${connectS.toFixed(1)} s (workers: ${ready.map((r) => (r.ms / 1000).toFixed(1)).join(', ')} s); ` +
    `tandem RSS ${mib(held.rss)} MiB (+${mib(held.rss - st0.rss)} MiB, ${((held.rss - st0.rss) / clients).toFixed(1)} KiB per stream), ` +
    `${held.threads} threads; hub: ${m0.clients} clients, ${m0.groups} groups`);

  // sampler
  let peakRss = held.rss;
  const sampler = setInterval(() => { const s = procStatus(pid); if (s.rss > peakRss) peakRss = s.rss; }, 100);

  // writer: record n at tw0 + n / rate, at most 256 requests in flight
  await ask('start');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  const u = new URL(env.TANDEM_URL);
  let inflight = 0, created = 0, skipped = 0, failed = 0;
  const made = new Array(nrec).fill(0); // which records were created
  const create = (n) => new Promise((resolve) => {
    const body = JSON.stringify({ owner: n % 2 === 0 ? env.USER_ID : 'someone-else', n, t: Date.now() });
    const req = http.request({ host: u.hostname, port: +u.port, path: '/api/collections/posts/records', method: 'POST', agent,
      headers: { Authorization: env.TOKEN, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => { if (res.statusCode === 200) { created++; made[n] = 1; } else failed++; resolve(); });
    });
    req.on('error', () => { failed++; resolve(); });
    req.end(body);
  });
  const cpu0 = procStat(pid);
  const tw0 = Date.now();
  const pending = [];
  for (let n = 0; n < nrec; n++) {
    const at = tw0 + (n * 1000) / rate;
    const wait = at - Date.now();
    if (wait > 0) await sleep(wait);
    if (inflight >= 256) { skipped++; continue; }
    inflight++;
    pending.push(create(n).then(() => inflight--));
  }
  await Promise.all(pending);
  const tw1 = Date.now();
  if (failed || skipped) console.log(`writer: ${failed} creates failed, ${skipped} skipped (256 requests in flight)`);
  let expectNow = 0; // what the streams should receive of the records created
  for (let n = 0; n < nrec; n++) if (made[n]) expectNow += n % 2 === 0 ? clients : nGuest;

  // wait for the deliveries to arrive, at most DRAIN s
  let got = 0, closed = 0, lastChange = Date.now(), last = -1;
  const tEnd = Date.now() + drain * 1000;
  while (Date.now() < tEnd) {
    const pr = await ask('progress');
    got = pr.reduce((a, r) => a + r.received, 0);
    closed = pr.reduce((a, r) => a + r.closed, 0);
    if (got !== last) { last = got; lastChange = Date.now(); }
    if (got >= expectNow || Date.now() - lastChange > 3000) break;
    await sleep(50);
  }
  const tLast = lastChange;
  const cpu1 = procStat(pid);
  clearInterval(sampler);
  const fin = procStatus(pid);
  const m1 = await metrics();
  finishing = true;
  const res = await ask('finish', { nrec, made });
  agent.destroy();

  const hist = new Array(HIST_MAX + 1).fill(0), histC = new Array(HIST_MAX + 1).fill(0);
  for (const r of res) r.hist.forEach((v, i) => { hist[i] += v; });
  for (const r of res) r.histC.forEach((v, i) => { histC[i] += v; });
  const probe = probes ? res[nw] : null;
  const probeGot = probe ? probe.guestGot + probe.userGot : 0;
  const total = res.reduce((a, r) => a + r.guestGot + r.userGot, 0);
  const guestGot = res.reduce((a, r) => a + r.guestGot, 0), userGot = res.reduce((a, r) => a + r.userGot, 0);
  const errors = res.reduce((a, r) => a + r.errors, 0);
  const bad = res.reduce((a, r) => a + r.bad, 0);
  const span = (tLast - tw0) / 1000;
  const dps = total / span;
  const p50 = pctHist(histC, total, 50), p90 = pctHist(histC, total, 90), p99 = pctHist(histC, total, 99), pmax = pctHist(histC, total, 100);
  const cpuS = (cpu1 - cpu0) / hz;
  const cpuPer = (cpuS * 1e6) / total;
  const clientCpu = res.reduce((a, r) => a + r.cpuUs, 0) / 1e6;

  console.log(`writer: ${created} records in ${((tw1 - tw0) / 1000).toFixed(1)} s (${(created / ((tw1 - tw0) / 1000)).toFixed(1)}/s)`);
  console.log(`deliveries: ${total} of ${expectNow} expected (guests ${guestGot} = ${(guestGot / nGuest).toFixed(1)} each, users ${userGot} = ${(userGot / nUser).toFixed(1)} each) ` +
    `in ${span.toFixed(1)} s from the first create to the last delivery = ${Math.round(dps)} deliveries/s; hub counted ${m1.deliveries - m0.deliveries}, dropped clients ${m1.dropped - m0.dropped}`);
  console.log(`change-to-delivery latency (the record's created time to its arrival): p50 ${p50} ms, p90 ${p90} ms, p99 ${p99} ms, max ${pmax} ms`);
  console.log(`  from the create request's start instead: p50 ${pctHist(hist, total, 50)} ms, p99 ${pctHist(hist, total, 99)} ms`);
  if (probe) console.log(`  at the ${probes} probe streams only (a client process of their own, idle): p50 ${pctHist(probe.histC, probeGot, 50)} ms, ` +
    `p90 ${pctHist(probe.histC, probeGot, 90)} ms, p99 ${pctHist(probe.histC, probeGot, 99)} ms, max ${pctHist(probe.histC, probeGot, 100)} ms`);
  console.log(`tandem: RSS held ${mib(held.rss)} MiB, peak while delivering ${mib(peakRss)} MiB (VmHWM ${mib(fin.hwm)} MiB); CPU ${cpuS.toFixed(2)} s = ` +
    `${(cpuS / span).toFixed(2)} cores, ${cpuPer.toFixed(2)} us per delivery; load clients used ${clientCpu.toFixed(1)} s CPU (${(clientCpu / span).toFixed(2)} cores)`);
  console.log(`RESULT clients ${clients} rate ${rate} deliveries_per_s ${Math.round(dps)} p50_ms ${p50} p99_ms ${p99} rss_held_mib ${mib(held.rss)} rss_peak_mib ${mib(peakRss)} cpu_us_per_delivery ${cpuPer.toFixed(2)}${probe ? ` probe_p50_ms ${pctHist(probe.histC, probeGot, 50)} probe_p99_ms ${pctHist(probe.histC, probeGot, 99)}` : ''}`);
  let ok = true;
  if (errors || bad || total !== expectNow || closed || !created) {
    ok = false;
    console.error(`ERROR: ${errors} streams got the wrong records, ${bad} unparsable messages, ${closed} streams closed, ${total} of ${expectNow} deliveries, ${created} records created`);
    for (const r of res) for (const e of r.examples) console.error(`  ${e}`);
  }
  await sleep(200);
  process.exit(ok ? 0 : 1);
}

if (process.argv[2] === 'worker') worker();
else main().catch((e) => { console.error(e); process.exit(2); });
