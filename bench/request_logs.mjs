// The cost of the request logs: tandem's CPU time (user + system, from /proc/<pid>/stat) per
// request for GET /api/health and for a record view, with settings.logs.maxDays 5 (every
// request logged, written to the `requests` topic and loaded into the warehouse) and 0 (none
// logged), measured in the same run, alternating rounds. CPU per request survives a loaded
// machine better than wall-clock rates; the ratio is the figure. Prints one JSON object.
//   node bench/request_logs.mjs [requests per round] [rounds]
// (TANDEM_BIN: the binary, default build/tandem; needs tests/integration/node_modules.)
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

const { startWithSuperuser } = await import(new URL('../tests/integration/lib/pb.mjs', import.meta.url));

const N = Number(process.argv[2] || 4000);
const ROUNDS = Number(process.argv[3] || 3);
const TICK = 100; // clock ticks per second (getconf CLK_TCK on Linux)

function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / TICK; // utime, stime
}

const { srv, pb } = await startWithSuperuser();
try {
  await pb.collections.create({ name: 'bench', type: 'base', fields: [{ name: 't', type: 'text' }], viewRule: '' });
  const rec = await pb.collection('bench').create({ t: 'x' });
  const targets = { health: `${srv.url}/api/health`, view: `${srv.url}/api/collections/bench/records/${rec.id}` };
  const cpu = { health: { on: [], off: [] }, view: { on: [], off: [] } };
  const load = loadavg()[0];
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of round % 2 ? ['off', 'on'] : ['on', 'off']) {
      await pb.settings.update({ logs: { maxDays: mode === 'on' ? 5 : 0 } });
      for (const [name, url] of Object.entries(targets)) {
        for (let i = 0; i < 200; i++) await (await fetch(url)).arrayBuffer(); // warm
        await new Promise((r) => setTimeout(r, 500)); // let the last batch load
        const c0 = cpuSeconds(srv.proc.pid);
        for (let i = 0; i < N; i++) {
          const r = await fetch(url);
          await r.arrayBuffer();
          if (r.status !== 200) throw new Error(`${url}: ${r.status}`);
        }
        await new Promise((r) => setTimeout(r, 500)); // the writer and the loader finish
        cpu[name][mode].push(((cpuSeconds(srv.proc.pid) - c0) / N) * 1e6);
      }
    }
  }
  const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const out = { requestsPerRound: N, rounds: ROUNDS, loadAvg1m: load };
  for (const name of Object.keys(cpu)) {
    out[name] = {
      cpuUsPerRequestLogged: Number(med(cpu[name].on).toFixed(1)),
      cpuUsPerRequestNotLogged: Number(med(cpu[name].off).toFixed(1)),
      ratio: Number((med(cpu[name].on) / med(cpu[name].off)).toFixed(2)),
    };
  }
  const total = await pb.logs.getList(1, 1, { filter: "data.url ~ '/api/health'" });
  out.healthEntriesLogged = total.totalItems;
  console.log(JSON.stringify(out));
} finally {
  await srv.stop();
}
