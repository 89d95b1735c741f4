// models.js - #/models: the SQL models (docs/models.md) with their lineage graph, last run,
// row counts and tests; #/models/<name>: one model's definition, its runs and their tests,
// and a button that queues a run.
import { request } from '../api.js';
import { h, clear, card, table, errorBox, fmtInt } from '../ui.js';

export const title = 'Models';

const enc = encodeURIComponent;
const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// Lineage: sources (tables) in the first column, each model one column right of its deepest
// input; an edge per dependency.
function lineage(models) {
  const byName = new Map(models.map((m) => [m.name, m]));
  const depth = new Map();
  const depthOf = (name, seen = new Set()) => {
    if (depth.has(name)) return depth.get(name);
    const m = byName.get(name);
    if (!m || seen.has(name)) return 0;
    seen.add(name);
    const d = 1 + Math.max(0, ...(m.dependsOn || []).map((x) => depthOf(x, seen)));
    depth.set(name, d);
    return d;
  };
  const nodes = new Map();
  for (const m of models) {
    for (const d of m.dependsOn || []) if (!byName.has(d)) nodes.set(d, 0);
    nodes.set(m.name, depthOf(m.name));
  }
  const cols = [];
  for (const [name, d] of nodes) (cols[d] ||= []).push(name);
  const W = 190, H = 34, GAP = 60, VGAP = 14;
  const pos = new Map();
  cols.forEach((names, c) => names.sort().forEach((n, r) => pos.set(n, { x: 10 + c * (W + GAP), y: 10 + r * (H + VGAP) })));
  const width = 20 + cols.length * (W + GAP), height = 20 + Math.max(1, ...cols.map((c) => c?.length || 0)) * (H + VGAP);
  const g = svg('svg', { width, height, class: 'lineage', 'data-testid': 'lineage' });
  for (const m of models) {
    for (const d of m.dependsOn || []) {
      const a = pos.get(d), b = pos.get(m.name);
      g.append(svg('path', { d: `M${a.x + W},${a.y + H / 2} C${a.x + W + GAP / 2},${a.y + H / 2} ${b.x - GAP / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}`, fill: 'none', stroke: '#999' }));
    }
  }
  for (const [name, p] of pos) {
    const m = byName.get(name);
    const status = m?.lastRun?.status;
    const fill = !m ? '#eee' : status === 'success' ? '#d9f2d9' : status === 'warn' ? '#fff3c4' : status ? '#f8d7da' : '#fff';
    const node = svg('g', { 'data-testid': `lineage-${name}` },
      svg('rect', { x: p.x, y: p.y, width: W, height: H, rx: 6, fill, stroke: '#777' }),
      svg('text', { x: p.x + 8, y: p.y + 21, 'font-size': 13 }, name.length > 24 ? `${name.slice(0, 23)}…` : name));
    if (m) {
      const link = svg('a', { href: `#/models/${enc(name)}` });
      link.append(node);
      g.append(link);
    } else {
      g.append(node);
    }
  }
  return g;
}

function testSummary(run) {
  if (!run) return '–';
  if (!run.testsRun) return 'none';
  return run.testsFailed ? `${run.testsFailed} of ${run.testsRun} failed` : `${run.testsRun} passed`;
}

export async function render(view, r) {
  if (r.args[0]) return one(view, r.args[0]);
  const list = await request('GET', '/api/models');
  const models = list.items;
  clear(view, h('h1', {}, 'Models'),
    models.length ? card('Lineage', h('div', { class: 'scroll' }, lineage(models))) : h('p', { class: 'muted' }, 'No models yet: see docs/models.md.'),
    card(null, table(
      [{ label: 'name' }, { label: 'materialized' }, { label: 'reads' }, { label: 'last run' }, { label: 'rows', num: true }, { label: 'tests' }, { label: 'sync' }],
      models.map((m) => [h('a', { href: `#/models/${enc(m.name)}`, testid: `model-link-${m.name}` }, m.name), m.materialized, (m.dependsOn || []).join(', '),
        m.lastRun ? `${m.lastRun.status} · ${m.lastRun.finishedAt || ''}` : 'never', m.lastRun ? fmtInt(m.lastRun.rows ?? 0) : '–',
        testSummary(m.lastRun), m.sync ? `→ ${m.sync.collection}` : '']),
      { testid: 'models', rowTestid: (i) => `model-${models[i].name}` })));
}

async function one(view, name) {
  const [m, runs] = await Promise.all([request('GET', `/api/models/${enc(name)}`), request('GET', `/api/models/${enc(name)}/runs?limit=20`)]);
  const status = h('span', { testid: 'run-status' });
  const runBtn = h('button', {
    type: 'button', testid: 'run-model',
    onclick: async () => {
      try {
        const q = await request('POST', `/api/models/${enc(name)}/run`, {});
        status.textContent = ` queued (${q.id}); reload to see it`;
      } catch (e) { status.replaceChildren(errorBox(e)); }
    },
  }, 'Run now');
  const rows = runs.items.map((x) => [x.status, x.trigger, x.mode || '', x.startedAt || '', x.finishedAt || '', x.rows ?? '', x.message || '']);
  const tests = (runs.items.find((x) => x.tests?.length)?.tests || []).map((t) => [t.name, t.type, t.column || '', t.severity, t.status, fmtInt(t.failures ?? 0), t.message || '']);
  clear(view, h('h1', {}, h('a', { href: '#/models' }, 'Models'), ' / ', name),
    card('Definition', h('p', {}, `${m.materialized}${m.uniqueKey ? ` by ${m.uniqueKey}` : ''} · reads ${(m.dependsOn || []).join(', ') || 'nothing'}${m.sync ? ` · syncs into ${m.sync.collection}` : ''}`),
      h('pre', { class: 'sql', testid: 'model-sql' }, m.sql), runBtn, status),
    card('Runs', table([{ label: 'status' }, { label: 'trigger' }, { label: 'mode' }, { label: 'started' }, { label: 'finished' }, { label: 'rows', num: true }, { label: 'message' }], rows, { testid: 'runs' })),
    card('Tests of the latest tested run', table([{ label: 'test' }, { label: 'type' }, { label: 'column' }, { label: 'severity' }, { label: 'status' }, { label: 'failures', num: true }, { label: 'message' }], tests, { testid: 'tests' })));
}
