// lifecycle.js - POST /api/insights/lifecycle: per bucket, the persons who are new,
// returning, resurrecting (above the axis) and dormant (below); a stacked bar chart and a table.
import { insight, listEvents } from '../api.js';
import { h, clear, card, table, chart, chartBox, errorBox, select, field, fmtInt, saveQuery, loadQuery, selectValue } from '../ui.js';

export const title = 'Lifecycle';

const RANGES = [['-7d', 'Last 7 days'], ['-14d', 'Last 14 days'], ['-30d', 'Last 30 days'], ['-90d', 'Last 90 days']];
const COLOURS = { new: '#59a14f', returning: '#4e79a7', resurrecting: '#edc948', dormant: '#e15759' };

export async function render(view, route) {
  const events = await listEvents();
  const event = select(events, events[0], { testid: 'lifecycle-event' });
  const interval = select(['day', 'week', 'month'], 'day', { testid: 'lifecycle-interval' });
  const range = select(RANGES, '-14d', { testid: 'lifecycle-range' });
  const [box, canvas] = chartBox('lifecycle-chart');
  const results = h('div');
  const msg = h('div');
  const saved = loadQuery(route);
  if (saved) {
    selectValue(event, saved.series?.[0]?.event);
    selectValue(interval, saved.interval);
    selectValue(range, saved.dateFrom);
  }

  let c = null;
  async function run() {
    clear(msg);
    clear(results);
    const q = { series: [{ event: event.value }], interval: interval.value, dateFrom: range.value, dateTo: 'now', timezone: 'UTC' };
    saveQuery('lifecycle', q);
    let r;
    try {
      r = await insight('lifecycle', q);
    } catch (e) {
      clear(msg, errorBox(e));
      return;
    }
    const labels = r.results[0]?.labels || [];
    if (c) c.destroy();
    c = chart(canvas, {
      type: 'bar',
      data: { labels, datasets: r.results.map((s) => ({ label: s.status, data: s.data, backgroundColor: COLOURS[s.status] || '#999' })) },
      options: { scales: { x: { stacked: true }, y: { stacked: true } } },
    });
    clear(results, table(
      [{ label: 'status' }, { label: 'total', num: true }, ...labels.map((l) => ({ label: l.slice(5, 16), num: true }))],
      r.results.map((s) => [s.status, fmtInt(s.data.reduce((a, b) => a + b, 0)), ...s.data.map(fmtInt)]),
      { testid: 'lifecycle-table', cellTestid: (i, k) => (k === 1 ? `lifecycle-total-${r.results[i].status}` : null) }));
  }

  clear(view, h('h1', {}, 'Lifecycle'),
    card(null, h('div', { class: 'form' },
      field('Event', event), field('Range', range), field('Interval', interval),
      h('button', { type: 'button', testid: 'lifecycle-run', onclick: run }, 'Show'))),
    msg, card(null, box, results));
  if (events.length || saved) await run();
}
