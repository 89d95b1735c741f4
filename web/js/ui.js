// ui.js - small DOM helpers, tables, number formats and charts.

// h('div', {class: 'x', onclick: fn, dataset: {testid: 'y'}}, child, ...)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'testid') el.dataset.testid = v;
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k === 'value') el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const fmtInt = (n) => (typeof n === 'number' ? n.toLocaleString('en-US', { maximumFractionDigits: 0 }) : String(n));
export const fmtNum = (n) => (typeof n === 'number' ? n.toLocaleString('en-US', { maximumFractionDigits: 2 }) : String(n));
export const fmtPct = (r) => `${(r * 100).toFixed(1)}%`;
export function fmtSeconds(s) {
  if (s === null || s === undefined) return '–';
  if (s < 60) return `${s.toFixed(0)} s`;
  if (s < 3600) return `${(s / 60).toFixed(1)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

// A value from the SQL API as text in a cell or a CSV field.
export function cellText(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// columns: [{label, testid?, num?}], rows: arrays of values or nodes; rowTestid(i) optional.
export function table(columns, rows, { testid, rowTestid, cellTestid } = {}) {
  return h('table', { class: 'grid', testid },
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : null }, c.label)))),
    h('tbody', {}, rows.map((r, i) => h('tr', { testid: rowTestid?.(i) },
      r.map((v, k) => h('td', { class: columns[k].num ? 'num' : null, testid: cellTestid?.(i, k) }, v instanceof Node ? v : cellText(v)))))));
}

export function errorBox(e) {
  return h('div', { class: 'error', testid: 'error', role: 'alert' }, e instanceof Error ? e.message : String(e));
}

export function card(title, ...body) {
  return h('section', { class: 'card' }, title ? h('h2', {}, title) : null, ...body);
}

export function stat(label, value, testid) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-value', testid }, value), h('div', { class: 'stat-label' }, label));
}

export function select(options, value, attrs = {}) {
  return h('select', attrs, options.map((o) => {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v, selected: v === value }, label);
  }));
}

export function field(label, control) {
  return h('label', { class: 'field' }, h('span', {}, label), control);
}

export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

// Charts: one per canvas; destroyed when the page is left (see app.js).
const live = new Set();
export function chart(canvas, config) {
  const c = new window.Chart(canvas, {
    ...config,
    options: { animation: false, responsive: true, maintainAspectRatio: false, ...config.options },
  });
  live.add(c);
  return c;
}
export function destroyCharts() {
  for (const c of live) c.destroy();
  live.clear();
}

export function chartBox(testid) {
  const canvas = h('canvas', { testid });
  return [h('div', { class: 'chart' }, canvas), canvas];
}

export function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// RFC 4180: fields with a comma, quote, CR or LF are quoted, quotes doubled; CRLF line ends.
export function toCsv(columns, rows) {
  const esc = (v) => {
    const s = cellText(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [columns.map(esc).join(','), ...rows.map((r) => r.map(esc).join(','))].join('\r\n') + '\r\n';
}

// An insight page keeps its last query in the address (#/<page>?q=<JSON>), so a reload or a
// copied link shows the same thing; replaceState does not fire hashchange (no new route).
export function saveQuery(page, q) {
  history.replaceState(null, '', `#/${page}?q=${encodeURIComponent(JSON.stringify(q))}`);
}
export function loadQuery(r) {
  const raw = r.query.get('q');
  if (!raw) return null;
  try {
    const q = JSON.parse(raw);
    return q && typeof q === 'object' && !Array.isArray(q) ? q : null;
  } catch {
    return null;
  }
}
// Selects value in a <select>, adding it as an option when the list lacks it.
export function selectValue(sel, value) {
  if (value === undefined || value === null) return;
  const v = String(value);
  if (![...sel.options].some((o) => o.value === v)) sel.append(h('option', { value: v }, v));
  sel.value = v;
}
