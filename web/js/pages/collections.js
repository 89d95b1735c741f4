// collections.js - #/collections lists the collections with their record counts;
// #/collections/<name>?page=N pages through one collection's records.
import { request } from '../api.js';
import { h, clear, card, table, errorBox, fmtInt, cellText } from '../ui.js';

export const title = 'Collections';

const PER_PAGE = 20;
const enc = encodeURIComponent;

export async function render(view, r) {
  if (r.args[0]) return records(view, r.args[0], Math.max(1, Number(r.query.get('page')) || 1));
  const list = await request('GET', '/api/collections?perPage=500&sort=name');
  const counts = await Promise.all(list.items.map((c) =>
    request('GET', `/api/collections/${enc(c.name)}/records?perPage=1&fields=id`).then((x) => x.totalItems, () => null)));
  clear(view, h('h1', {}, 'Collections'), card(null, table(
    [{ label: 'name' }, { label: 'type' }, { label: 'fields', num: true }, { label: 'records', num: true }],
    list.items.map((c, i) => [h('a', { href: `#/collections/${enc(c.name)}`, testid: `collection-link-${c.name}` }, c.name), c.type,
      fmtInt((c.fields || []).length), counts[i] === null ? '–' : fmtInt(counts[i])]),
    { testid: 'collections', cellTestid: (i, k) => (k === 3 ? `collection-count-${list.items[i].name}` : null) })));
}

async function records(view, name, page) {
  const col = await request('GET', `/api/collections/${enc(name)}`);
  // newest first where the collection has the autodate field, else the API's default order
  const sort = (col.fields || []).some((f) => f.name === 'created') ? '&sort=-created,id' : '';
  const res = await request('GET', `/api/collections/${enc(name)}/records?page=${page}&perPage=${PER_PAGE}${sort}`);
  const fields = (col.fields || []).filter((f) => !f.hidden && f.type !== 'password');
  const cols = fields.length ? fields.map((f) => f.name) : Object.keys(res.items[0] || { id: '' });
  const numeric = new Set(fields.filter((f) => f.type === 'number').map((f) => f.name));
  const link = (p, label, testid) => (p >= 1 && p <= res.totalPages && p !== page
    ? h('a', { href: `#/collections/${enc(name)}?page=${p}`, testid }, label)
    : h('span', { class: 'muted' }, label));
  const pager = h('div', { class: 'pager' }, link(page - 1, '‹ previous', 'records-prev'),
    h('span', {}, ' page ', h('b', { testid: 'records-page' }, String(res.page)), ' of ', h('b', { testid: 'records-pages' }, String(res.totalPages)), ' · ',
      h('b', { testid: 'records-total' }, fmtInt(res.totalItems)), ' records '),
    link(page + 1, 'next ›', 'records-next'));
  const short = (v) => { const s = cellText(v); return s.length > 80 ? `${s.slice(0, 77)}…` : s; };
  clear(view, h('h1', {}, h('a', { href: '#/collections' }, 'Collections'), ' / ', name),
    card(null, pager, h('div', { class: 'scroll' }, table(cols.map((c) => ({ label: c, num: numeric.has(c) })), res.items.map((it) => cols.map((c) => short(it[c]))),
      { testid: 'records', rowTestid: (i) => `record-${res.items[i].id}` }))));
}
