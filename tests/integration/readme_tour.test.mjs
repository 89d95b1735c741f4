// README.md's "A quick tour" runs as written. The ```sh blocks of that section are read with
// this convention (the README states it too):
//   - a line starting with `$ ` is a command; a command line ending in `\` continues on the next;
//   - the lines after a command, up to the next `$ `, blank or `#` line, are its expected stdout;
//     a command with none is checked only for its exit status;
//   - `...` in an expected line matches anything on that line; a line that is only `...`
//     matches any number of lines; runs of spaces compare as one space.
// The commands run in order in one bash, in a temporary directory where `build` links to the
// real build directory (so the tour's relative data directory is a fresh temporary one), with
// the tour's port replaced by a free one. The `serve` step runs in the background as written;
// the test waits for its first line, and stops it by its PID at the end if the tour did not.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { BIN, tempDir } from './lib/server.mjs';

const README = new URL('../../README.md', import.meta.url);

// The tour's steps: [{cmd, expected: [lines], line}] from README text.
export function parseTour(text) {
  const lines = text.split('\n');
  const at = lines.findIndex((l) => /^##\s+A quick tour\s*$/.test(l));
  if (at < 0) throw new Error('README.md has no "## A quick tour" section');
  const steps = [];
  let inSh = false;
  let cur = null;
  for (let i = at + 1; i < lines.length && !/^##\s/.test(lines[i]); i++) {
    const l = lines[i];
    if (!inSh) {
      if (/^```sh\s*$/.test(l)) inSh = true;
      continue;
    }
    if (/^```\s*$/.test(l)) {
      inSh = false;
      cur = null;
      continue;
    }
    if (l.startsWith('$ ')) {
      cur = { cmd: l.slice(2), expected: [], line: i + 1 };
      while (cur.cmd.endsWith('\\') && i + 1 < lines.length) cur.cmd += '\n' + lines[++i];
      steps.push(cur);
    } else if (l.trim() === '' || l.trimStart().startsWith('#')) {
      cur = null;
    } else if (cur) {
      cur.expected.push(l);
    }
  }
  return steps;
}

const norm = (s) => s.replace(/\s+/g, ' ').trim();
const lineRe = (l) =>
  new RegExp('^' + norm(l).split('...').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');

// Does stdout match the expected lines?
export function outputMatches(expected, stdout) {
  const want = expected.map((l) => (norm(l) === '...' ? null : lineRe(l)));
  const got = stdout.replace(/\n$/, '').split('\n').map(norm);
  const memo = new Map();
  const m = (i, j) => {
    const k = i * (got.length + 1) + j;
    if (memo.has(k)) return memo.get(k);
    let r;
    if (i === want.length) r = j === got.length;
    else if (want[i] === null) r = m(i + 1, j) || (j < got.length && m(i, j + 1));
    else r = j < got.length && want[i].test(got[j]) && m(i + 1, j + 1);
    memo.set(k, r);
    return r;
  };
  return m(0, 0);
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

const work = tempDir('tandem-tour-');
const pidFile = join(work, '.tour-serve.pid');
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
after(async () => {
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8'));
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* already stopped by the tour */
    }
    // it writes its last files (the dedup snapshot, the warehouse) while it stops: wait for
    // it to be gone before the directory is removed, and end it after 60 s
    for (let i = 0; i < 600 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
  rmSync(work, { recursive: true, force: true });
});

test('the convention: wildcards, whole-line "...", spaces', () => {
  assert.ok(outputMatches(['{"id":"...","n":1}'], '{"id":"abc","n":1}\n'));
  assert.ok(!outputMatches(['{"id":"...","n":1}'], '{"id":"abc","n":2}\n'));
  assert.ok(outputMatches(['a', '...', 'z'], 'a\nb\nc\nz\n'));
  assert.ok(outputMatches(['a', '...'], 'a\n'));
  assert.ok(!outputMatches(['a'], 'a\nb\n'));
  assert.ok(outputMatches(['...     | hello'], 'xff67gf3grx04tg | hello'));
  const steps = parseTour('## A quick tour\n```sh\n# c\n$ echo a \\\n  b\na b\n\n$ true\n```\n## Next\n```sh\n$ false\n```\n');
  assert.deepEqual(steps.map((s) => [s.cmd, s.expected]), [['echo a \\\n  b', ['a b']], ['true', []]]);
});

test("README.md's quick tour runs as written", async () => {
  const steps = parseTour(readFileSync(README, 'utf8'));
  assert.ok(steps.length >= 10, `the tour has only ${steps.length} commands`);
  const serveAt = steps.findIndex((s) => /\bbuild\/tandem serve\b.*&\s*$/.test(s.cmd));
  assert.ok(serveAt >= 0, 'the tour starts `build/tandem serve ... &` in the background');
  const m = /^tandem listening on http:\/\/127\.0\.0\.1:(\d+)$/.exec(steps[serveAt].expected[0] || '');
  assert.ok(m, 'the serve step shows the line it prints first');
  const tourPort = m[1];
  const port = String(await freePort());
  const sub = (s) => s.replaceAll(`:${tourPort}`, `:${port}`);

  symlinkSync(resolve(dirname(BIN)), join(work, 'build'));
  // one bash runs every step in order, so variables and the background job carry over;
  // each step's stdout, stderr and status go to files named by its index
  let script = 'cd "$(dirname "$0")"\n';
  steps.forEach((s, i) => {
    script += `{\n${sub(s.cmd)}\n} >.out.${i} 2>.err.${i}\necho $? >.rc.${i}\n`;
    if (i === serveAt)
      script += `echo $! >${JSON.stringify(pidFile)}\n` +
        `for _ in $(seq 300); do [ -s .out.${i} ] && break; sleep 0.05; done\n`;
    script += `[ "$(cat .rc.${i})" = 0 ] || exit 0\n`;
  });
  const scriptPath = join(work, '.tour.sh');
  writeFileSync(scriptPath, script);

  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TANDEM_')));
  const status = await new Promise((res) => {
    const p = spawn('bash', [scriptPath], { env, stdio: ['ignore', 'inherit', 'inherit'] });
    const timer = setTimeout(() => p.kill('SIGKILL'), 120000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      res(code);
    });
  });
  assert.equal(status, 0, 'the tour script ran to its end');

  steps.forEach((s, i) => {
    const where = `README.md:${s.line}: $ ${s.cmd.split('\n')[0]}`;
    const read = (f) => (existsSync(join(work, f)) ? readFileSync(join(work, f), 'utf8') : null);
    const rc = read(`.rc.${i}`);
    assert.ok(rc !== null, `${where}\nnot reached`);
    const stdout = read(`.out.${i}`);
    const stderr = read(`.err.${i}`);
    assert.equal(rc.trim(), '0', `${where}\nexit status ${rc.trim()}\nstdout: ${stdout}\nstderr: ${stderr}`);
    if (s.expected.length)
      assert.ok(outputMatches(s.expected.map(sub), stdout),
        `${where}\nexpected:\n${s.expected.map(sub).join('\n')}\ngot:\n${stdout}stderr: ${stderr}`);
  });
});
