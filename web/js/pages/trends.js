// trends.js - POST /api/insights/trends: series (event + math), interval, range, breakdown;
// a line chart with one line per series and breakdown value, and a table of the numbers.
import { insight, listEvents, listPropertyKeys } from '../api.js';
import { h, clear, card, table, chart, chartBox, errorBox, select, field, fmtNum, PALETTE, saveQuery, loadQuery, selectValue } from '../ui.js';

export const title = 'Trends';

const MATHS = ['total', 'unique_users', 'wau', 'mau', 'sum', 'avg', 'min', 'max', 'median', 'p90', 'p95', 'p99'];
const PROPERTY_MATHS = new Set(['sum', 'avg', 'min', 'max', 'median', 'p90', 'p95', 'p99']);
const RANGES = [['-7d', 'Last 7 days'], ['-14d', 'Last 14 days'], ['-30d', 'Last 30 days'], ['-90d', 'Last 90 days'], ['-24h', 'Last 24 hours']];
const BREAKDOWN_LABELS = { $$_posthog_breakdown_null_$$: '(none)', $$_posthog_breakdown_other_$$: '(other)' };

export function seriesLabel(r) {
  if (r.breakdown === null || r.breakdown === undefined) return r.label;
  return `${r.label} · ${BREAKDOWN_LABELS[r.breakdown] || r.breakdown}`;
}

export async function render(view, route) {
  const [events, keys] = await Promise.all([listEvents(), listPropertyKeys().catch(() => [])]);
  const eventOptions = [['', 'All events'], ...events.map((e) => [e, e])];
  const seriesBox = h('div', { class: 'series' });
  const interval = select(['hour', 'day', 'week', 'month'], 'day', { testid: 'trends-interval' });
  const range = select(RANGES, '-14d', { testid: 'trends-range' });
  const breakdown = select([['', 'No breakdown'], ...keys.map((k) => [k, k])], '', { testid: 'trends-breakdown' });
  const [box, canvas] = chartBox('trends-chart');
  const results = h('div');
  const msg = h('div');

  function addSeries(event = events[0] || '', m = 'total', mathProperty = '') {
    const ev = select(eventOptions, event, { class: 'series-event' });
    if (event) selectValue(ev, event);
    const math = select(MATHS, m, { class: 'series-math' });
    const prop = h('input', { class: 'series-prop', placeholder: 'properties.amount', hidden: !PROPERTY_MATHS.has(m), value: mathProperty });
    math.addEventListener('change', () => { prop.hidden = !PROPERTY_MATHS.has(math.value); });
    const row = h('div', { class: 'series-row' }, ev, math, prop,
      h('button', { type: 'button', class: 'link', onclick: () => { if (seriesBox.children.length > 1) row.remove(); } }, 'remove'));
    seriesBox.append(row);
  }
  const saved = loadQuery(route);
  if (saved && Array.isArray(saved.series) && saved.series.length) {
    for (const sr of saved.series) addSeries(sr?.event ?? '', sr?.math || 'total', sr?.mathProperty || '');
    selectValue(interval, saved.interval);
    selectValue(range, saved.dateFrom);
    selectValue(breakdown, saved.breakdown || '');
  } else {
    addSeries();
  }

  function query() {
    const series = [...seriesBox.querySelectorAll('.series-row')].map((row) => {
      const s = { event: row.querySelector('.series-event').value || null, math: row.querySelector('.series-math').value };
      if (PROPERTY_MATHS.has(s.math)) s.mathProperty = row.querySelector('.series-prop').value.trim();
      return s;
    });
    const q = { series, interval: interval.value, dateFrom: range.value, dateTo: 'now', timezone: 'UTC' };
    if (breakdown.value) q.breakdown = breakdown.value;
    return q;
  }

  async function run() {
    clear(msg);
    clear(results);
    const q = query();
    saveQuery('trends', q);
    let r;
    try {
      r = await insight('trends', q);
    } catch (e) {
      clear(msg, errorBox(e));
      return;
    }
    show(r);
  }

  let c = null;
  function show(r) {
    const labels = r.results[0]?.labels || [];
    const datasets = r.results.map((s, i) => ({
      label: seriesLabel(s), data: s.data, borderColor: PALETTE[i % PALETTE.length],
      backgroundColor: PALETTE[i % PALETTE.length], tension: 0, pointRadius: 2,
    }));
    if (c) c.destroy();
    c = chart(canvas, { type: 'line', data: { labels, datasets }, options: { scales: { y: { beginAtZero: true } } } });
    clear(results, table(
      [{ label: 'series' }, { label: 'math' }, { label: 'total', num: true }, ...labels.map((l) => ({ label: l.slice(5, 16), num: true }))],
      r.results.map((s) => [seriesLabel(s), s.math, fmtNum(s.count), ...s.data.map(fmtNum)]),
      { testid: 'trends-table', rowTestid: (i) => `trends-row-${i}`, cellTestid: (i, k) => (k === 0 ? `trends-label-${i}` : k === 2 ? `trends-count-${i}` : null) }));
  }

  clear(view, h('h1', {}, 'Trends'),
    card(null,
      h('div', { class: 'form' },
        field('Series', h('div', {}, seriesBox, h('button', { type: 'button', class: 'link', testid: 'trends-add-series', onclick: () => addSeries() }, '+ add series'))),
        field('Range', range), field('Interval', interval), field('Breakdown', breakdown),
        h('button', { type: 'button', testid: 'trends-run', onclick: run }, 'Show'))),
    msg, card(null, box, results));
  if (events.length || saved) await run();
}
