// stickiness.js - POST /api/insights/stickiness: how many persons were active in exactly
// 1, 2, 3 ... buckets of the range; a bar chart per series and a table.
import { insight, listEvents } from '../api.js';
import { h, clear, card, table, chart, chartBox, errorBox, select, field, fmtInt, saveQuery, loadQuery, selectValue, PALETTE } from '../ui.js';

export const title = 'Stickiness';

const RANGES = [['-7d', 'Last 7 days'], ['-14d', 'Last 14 days'], ['-30d', 'Last 30 days'], ['-90d', 'Last 90 days']];

export async function render(view, route) {
  const events = await listEvents();
  const event = select(events, events[0], { testid: 'stickiness-event' });
  const interval = select(['day', 'week', 'month'], 'day', { testid: 'stickiness-interval' });
  const range = select(RANGES, '-14d', { testid: 'stickiness-range' });
  const [box, canvas] = chartBox('stickiness-chart');
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
    saveQuery('stickiness', q);
    let r;
    try {
      r = await insight('stickiness', q);
    } catch (e) {
      clear(msg, errorBox(e));
      return;
    }
    const labels = r.results[0]?.labels || [];
    if (c) c.destroy();
    c = chart(canvas, {
      type: 'bar',
      data: { labels, datasets: r.results.map((s, i) => ({ label: s.label, data: s.data, backgroundColor: PALETTE[i % PALETTE.length] })) },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: 'persons' } } } },
    });
    clear(results, table(
      [{ label: 'series' }, { label: 'persons', num: true }, ...labels.map((l) => ({ label: l, num: true }))],
      r.results.map((s) => [s.label, fmtInt(s.count), ...s.data.map(fmtInt)]),
      { testid: 'stickiness-table', cellTestid: (i, k) => (k === 1 ? `stickiness-count-${i}` : k >= 2 ? `stickiness-${i}-${k - 2}` : null) }));
  }

  clear(view, h('h1', {}, 'Stickiness'),
    card(null, h('div', { class: 'form' },
      field('Event', event), field('Range', range), field('Interval', interval),
      h('button', { type: 'button', testid: 'stickiness-run', onclick: run }, 'Show'))),
    msg, card(null, box, results));
  if (events.length || saved) await run();
}
