// Starts the real tandem binary on 127.0.0.1 with an ephemeral port and a temporary data
// directory, and stops it by its own PID. Every test file uses this; nothing is killed by name.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startKafkaMock } from './kafka.mjs';

export const BIN = process.env.TANDEM_BIN || new URL('../../../build/tandem', import.meta.url).pathname;

export function tempDir(prefix = 'tandem-it-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

// The event log backend the tests run against: TANDEM_TEST_LOG=kafka runs every server and
// every CLI command of this process with --log kafka on one mock cluster (tests/kafka_mock.c,
// started on first use, stopped with the process), each data directory with topics of its
// own (its own --kafka-topic-prefix), so servers of one test file never see each other's
// events. CTest runs the crash and SDK suites once per backend (CMakeLists.txt).
export const TEST_LOG = process.env.TANDEM_TEST_LOG || 'local';
let mock = null;
const prefixes = new Map(); // data directory -> promise of its topic prefix
let created = Promise.resolve();

async function kafkaMock() {
  if (!mock) {
    mock = startKafkaMock();
    const m = await mock;
    for (const s of [m.proc, m.proc.stdin, m.proc.stdout, m.proc.stderr]) s.unref?.();
    process.on('exit', () => { if (m.proc.exitCode === null) m.proc.kill(); });
  }
  return mock;
}

// The environment that points a process at dir's topics on the mock ({} on the local log).
export async function logEnv(dir) {
  if (TEST_LOG !== 'kafka' || !dir) return {};
  const m = await kafkaMock();
  if (!prefixes.has(dir)) { // one command at a time: the mock answers in order
    const prefix = `t${prefixes.size + 1}-`;
    prefixes.set(dir, created.then(async () => {
      await m.cmd(`create ${prefix}events 4`);
      await m.cmd(`create ${prefix}changes 4`);
      return prefix;
    }));
    created = prefixes.get(dir);
  }
  return { TANDEM_LOG: 'kafka', TANDEM_KAFKA_BROKERS: m.bootstrap, TANDEM_KAFKA_TOPIC_PREFIX: await prefixes.get(dir) };
}

// On Kafka, reads (the mirror, then the warehouse) follow acknowledgements a little later:
// waits until the server's copy holds every partition up to an end read after this call, and
// the loader has loaded it (a no-op on the local log, where an acknowledged event is readable
// at once). token: a superuser's.
export async function settled(url, token) {
  if (TEST_LOG !== 'kafka') return;
  const since = Date.now();
  for (let i = 0; i < 600; i++) {
    const asked = Date.now();
    const p = await (await fetch(`${url}/api/pipeline`, { headers: { Authorization: token } })).json();
    const parts = p.kafkaPartitions || [];
    if (parts.length > 0 && parts.every((x) => x.error === undefined && x.lag === 0 &&
      x.endAgeMs !== undefined && asked - x.endAgeMs > since) &&
      (p.consumers || []).every((c) => c.ready && c.lagRecords === 0)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the Kafka copy did not catch up');
}

// start({args, env, dir}) -> {url, port, proc, dir, stderr(), stop()}
export async function start({ args = [], env = {}, dir, keepDir = false } = {}) {
  const ownDir = !dir;
  dir = dir || tempDir();
  const backend = await logEnv(dir);
  const proc = spawn(BIN, ['serve', '--http', '127.0.0.1:0', '--dir', dir, ...args], {
    env: { ...process.env, TANDEM_LOG_LEVEL: 'warn', ...backend, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  // A server that does not come up is stopped (by its own PID) before the error is thrown,
  // so a failed start never leaves a process or a temporary directory behind.
  const abandon = async (err) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
    if (ownDir && !keepDir) rmSync(dir, { recursive: true, force: true });
    throw err;
  };
  let firstLine;
  try {
    firstLine = await new Promise((resolve, reject) => {
      const rl = createInterface({ input: proc.stdout });
      const timer = setTimeout(() => reject(new Error(`tandem did not start: ${stderr}`)), 60000);
      rl.once('line', (line) => { clearTimeout(timer); resolve(line); });
      exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`tandem exited ${code}: ${stderr}`)); });
    });
  } catch (err) {
    return abandon(err);
  }
  const m = /^tandem listening on (http:\/\/127\.0\.0\.1:(\d+))$/.exec(firstLine);
  if (!m) return abandon(new Error(`unexpected first line: ${firstLine}`));
  const server = {
    url: m[1],
    port: Number(m[2]),
    proc,
    dir,
    firstLine,
    exited,
    stderr: () => stderr,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const r = await exited;
      if (ownDir && !keepDir) rmSync(dir, { recursive: true, force: true });
      return r;
    },
  };
  return server;
}

// Runs the binary to completion (for CLI tests), on the backend of the directory after --dir.
export async function run(args, { env = {} } = {}) {
  const at = args.indexOf('--dir');
  const backend = await logEnv(at >= 0 ? args[at + 1] : null);
  return new Promise((resolve) => {
    const proc = spawn(BIN, args, { env: { ...process.env, ...backend, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
