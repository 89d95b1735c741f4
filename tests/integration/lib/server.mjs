// Starts the real tandem binary on 127.0.0.1 with an ephemeral port and a temporary data
// directory, and stops it by its own PID. Every test file uses this; nothing is killed by name.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export const BIN = process.env.TANDEM_BIN || new URL('../../../build/tandem', import.meta.url).pathname;

export function tempDir(prefix = 'tandem-it-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

// start({args, env, dir}) -> {url, port, proc, dir, stderr(), stop()}
export async function start({ args = [], env = {}, dir, keepDir = false } = {}) {
  const ownDir = !dir;
  dir = dir || tempDir();
  const proc = spawn(BIN, ['serve', '--http', '127.0.0.1:0', '--dir', dir, ...args], {
    env: { ...process.env, TANDEM_LOG_LEVEL: 'warn', ...env },
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

// Runs the binary to completion (for CLI tests).
export function run(args, { env = {} } = {}) {
  return new Promise((resolve) => {
    const proc = spawn(BIN, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
