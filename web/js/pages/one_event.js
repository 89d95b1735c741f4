// one_event.js - the shape stickiness and lifecycle share: one event, a range and an interval,
// POST /api/insights/<kind>, then a chart and a table drawn by the page (show).
import { insight, listEvents } from '../api.js';
import { h, clear, card, chart, chartBox, errorBox, select, field, saveQuery, loadQuery, selectValue } from '../ui.js';

const RANGES = [['-7d', 'Last 7 days'], ['-14d', 'Last 14 days'], ['-30d', 'Last 30 days'], ['-90d', 'Last 90 days']];

// show(r) returns { config: the Chart.js config, table: the results table element }
export async function oneEventPage(view, route, kind, title, show) {
  const events = await listEvents();
  const event = select(events, events[0], { testid: `${kind}-event` });
  const interval = select(['day', 'week', 'month'], 'day', { testid: `${kind}-interval` });
  const range = select(RANGES, '-14d', { testid: `${kind}-range` });
  const [box, canvas] = chartBox(`${kind}-chart`);
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
    saveQuery(kind, q);
    let r;
    try {
      r = await insight(kind, q);
    } catch (e) {
      clear(msg, errorBox(e));
      return;
    }
    const drawn = show(r);
    if (c) c.destroy();
    c = chart(canvas, drawn.config);
    clear(results, drawn.table);
  }

  clear(view, h('h1', {}, title),
    card(null, h('div', { class: 'form' },
      field('Event', event), field('Range', range), field('Interval', interval),
      h('button', { type: 'button', testid: `${kind}-run`, onclick: run }, 'Show'))),
    msg, card(null, box, results));
  if (events.length || saved) await run();
}
