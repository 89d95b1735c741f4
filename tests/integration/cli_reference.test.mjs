// docs/cli.md against the binary: every command and verb of `tandem --help` and of each
// command's usage line, every command's own option and every option (with its variable and
// default) has a row in docs/cli.md, and every row names one that exists. `--help` must list
// every command src/main.c dispatches. The row format is described in docs/cli.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { BIN, tempDir } from './lib/server.mjs';

const ROOT = new URL('../../', import.meta.url).pathname;

// in a scratch directory, so that a command that got further than its usage check could not
// touch ./tandem_data of the tree
const CWD = tempDir('tandem-cli-');
process.on('exit', () => rmSync(CWD, { recursive: true, force: true }));

function tandem(args) {
  const r = spawnSync(BIN, args, { cwd: CWD, encoding: 'utf8', env: { PATH: process.env.PATH } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// "log check | repair" -> ["log check", "log repair"]; "query SQL [--url URL]" -> ["query"]
function commandForms(synopsis) {
  const words = synopsis.trim().split(/\s+/);
  const cmd = words[0];
  const forms = [];
  let verbNext = true;
  for (const w of words.slice(1)) {
    if (w === '|') { verbNext = true; continue; }
    if (verbNext && /^[a-z][a-z-]*$/.test(w)) forms.push(`${cmd} ${w}`);
    verbNext = false;
  }
  return forms.length ? forms : [cmd];
}

const ownOptions = (synopsis) => [...synopsis.matchAll(/--[a-z][a-z-]*/g)].map((m) => m[0]);

function parseHelp(text) {
  const commands = new Set(), own = new Set(), options = new Map();
  let section = null;
  for (const line of text.split('\n')) {
    if (line === 'commands:') { section = 'commands'; continue; }
    if (line.startsWith('options')) { section = 'options'; continue; }
    if (line === '') { if (section === 'commands') section = null; continue; }
    if (section === 'commands' && /^ {2}\S/.test(line)) {
      const synopsis = line.trim().split(/ {2,}/)[0];
      commandForms(synopsis).forEach((c) => commands.add(c));
      ownOptions(synopsis).forEach((o) => own.add(o));
    } else if (section === 'options') {
      const m = line.match(/^ {2}(--[a-z][a-z-]*)\s+(TANDEM_[A-Z_]+)\s.*\(default (.*)\)$/);
      if (m) options.set(m[1], { env: m[2], def: m[3] });
    }
  }
  return { commands, own, options };
}

function cells(line) {
  return line.split('|').slice(1, -1).map((c) => c.trim());
}

function parseDoc(text) {
  const commands = new Set(), own = new Set(), options = new Map(), dups = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('| `')) continue;
    const c = cells(line);
    const first = c[0].match(/^`([^`]*)`$/);
    if (!first) continue;
    let m;
    if ((m = first[1].match(/^tandem ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?(?: |$)/))) {
      const form = m[2] ? `${m[1]} ${m[2]}` : m[1];
      if (commands.has(form)) dups.push(form);
      commands.add(form);
    } else if ((m = first[1].match(/^(--[a-z][a-z-]*) \S+$/))) {
      if (own.has(m[1])) dups.push(m[1]);
      own.add(m[1]);
    } else if ((m = first[1].match(/^(--[a-z][a-z-]*)$/))) {
      if (options.has(m[1])) dups.push(m[1]);
      const unquote = (s) => (s || '').replace(/^`(.*)`$/, '$1');
      options.set(m[1], { env: unquote(c[1]), def: unquote(c[2]) });
    }
  }
  return { commands, own, options, dups };
}

function diff(label, want, have) {
  const missing = [...want].filter((x) => !have.has(x));
  const extra = [...have].filter((x) => !want.has(x));
  const lines = [
    ...missing.map((x) => `${label} missing from docs/cli.md: ${x}`),
    ...extra.map((x) => `docs/cli.md names a ${label} that does not exist: ${x}`),
  ];
  return lines;
}

test('the parsers read the formats docs/cli.md describes', () => {
  assert.deepEqual(commandForms('log check | repair'), ['log check', 'log repair']);
  assert.deepEqual(commandForms('query SQL [--url URL] [--format table|csv|json]'), ['query']);
  assert.deepEqual(commandForms('superuser upsert EMAIL PASSWORD'), ['superuser upsert']);
  const d = parseDoc([
    '| `tandem serve` | x |', '| `tandem log dump TOPIC` | x |', '| `tandem log dump` | again |',
    '| `--from N` | `log dump` | x |', '| `--dir` | `TANDEM_DIR` | `./d` | x |',
    '`tandem prose` is not a row', '| `--http value` | `query` | own option |', '| `-x` | no |',
  ].join('\n'));
  assert.deepEqual([...d.commands], ['serve', 'log dump']);
  assert.deepEqual([...d.own], ['--from', '--http']);
  assert.deepEqual(d.options.get('--dir'), { env: 'TANDEM_DIR', def: './d' });
  assert.deepEqual(d.dups, ['log dump']);
});

test('--help lists every command src/main.c dispatches', () => {
  const help = tandem(['--help']);
  assert.equal(help.code, 0);
  const listed = new Set([...parseHelp(help.out).commands].map((c) => c.split(' ')[0]));
  const main = readFileSync(`${ROOT}src/main.c`, 'utf8');
  const dispatched = [...main.matchAll(/strcmp\(cmd, "([a-z][a-z-]*)"\)/g)].map((m) => m[1]);
  assert.ok(dispatched.length >= 5, 'src/main.c dispatch not found');
  const unlisted = dispatched.filter((c) => !listed.has(c));
  assert.deepEqual(unlisted, [], `commands missing from --help: ${unlisted.join(', ')}`);
  for (const c of listed) {
    assert.doesNotMatch(tandem([c, '--no-such-option']).err, /unknown command/, c);
  }
});

test('docs/cli.md documents every command, verb and option, and nothing else', () => {
  const help = parseHelp(tandem(['--help']).out);
  assert.ok(help.options.size >= 20 && help.commands.size >= 8, 'could not read --help');
  // each command's usage line (bad usage) names its verbs and own options too
  for (const cmd of new Set([...help.commands].map((c) => c.split(' ')[0]))) {
    if (cmd === 'serve') continue; // no usage line: it would start the server
    const r = tandem([cmd, '--dir', `${CWD}/d`]);
    const usage = r.err.match(/^usage: tandem (.*)$/m);
    if (!usage) continue; // version, help
    assert.equal(r.code, 2, cmd);
    for (const alt of usage[1].split(' | ')) {
      const synopsis = alt.startsWith(`${cmd} `) || alt === cmd ? alt : `${cmd} ${alt}`;
      commandForms(synopsis).forEach((c) => help.commands.add(c));
      ownOptions(synopsis).forEach((o) => help.own.add(o));
    }
  }
  const doc = parseDoc(readFileSync(`${ROOT}docs/cli.md`, 'utf8'));
  const problems = [
    ...doc.dups.map((x) => `docs/cli.md has two rows for ${x}`),
    ...diff('command', help.commands, doc.commands),
    ...diff("command's own option", help.own, doc.own),
    ...diff('option', new Set(help.options.keys()), new Set(doc.options.keys())),
  ];
  for (const [name, want] of help.options) {
    const have = doc.options.get(name);
    if (have && (have.env !== want.env || have.def !== want.def))
      problems.push(`${name}: docs/cli.md says ${have.env} default ${have.def}, ` +
        `--help says ${want.env} default ${want.def}`);
  }
  assert.deepEqual(problems, []);
});
