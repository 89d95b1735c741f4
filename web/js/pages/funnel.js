// funnel.js - POST /api/insights/funnel: steps, window, order; a bar chart of the actors at
// each step with the conversion from the first step, and a table with the times.
import { insight, listEvents } from '../api.js';
import { h, clear, card, table, chart, chartBox, errorBox, select, field, fmtInt, fmtPct, fmtSeconds, PALETTE, saveQuery, loadQuery, selectValue } from '../ui.js';

export const title = 'Funnel';

const RANGES = [['-7d', 'Last 7 days'], ['-14d', 'Last 14 days'], ['-30d', 'Last 30 days'], ['-90d', 'Last 90 days']];

// The plugin draws each bar's conversion from the first step above it.
const conversionLabels = {
  id: 'conversionLabels',
  afterDatasetsDraw(c) {
    const rates = c.options.plugins.conversionLabels?.rates;
    if (!rates) return;
    const { ctx } = c;
    const meta = c.getDatasetMeta(0);
    ctx.save();
    ctx.fillStyle = '#222';
    ctx.font = '600 13px system-ui, sans-serif';
    ctx.textAlign = 'center';
    meta.data.forEach((bar, i) => ctx.fillText(fmtPct(rates[i]), bar.x, bar.y - 6));
    ctx.restore();
  },
};

export async function render(view, route) {
  const events = await listEvents();
  const stepsBox = h('div', { class: 'series' });
  const windowN = h('input', { type: 'number', min: 1, value: 14, class: 'narrow', testid: 'funnel-window' });
  const windowUnit = select(['minute', 'hour', 'day', 'week', 'month'], 'day', { testid: 'funnel-window-unit' });
  const order = select(['ordered', 'strict', 'unordered'], 'ordered', { testid: 'funnel-order' });
  const range = select(RANGES, '-30d', { testid: 'funnel-range' });
  const [box, canvas] = chartBox('funnel-chart');
  const results = h('div');
  const msg = h('div');

  function addStep(event = events[0] || '') {
    const ev = select(events, event, { class: 'step-event' });
    selectValue(ev, event);
    const row = h('div', { class: 'series-row' }, h('span', { class: 'step-no' }), ev,
      h('button', { type: 'button', class: 'link', onclick: () => { if (stepsBox.children.length > 2) { row.remove(); renumber(); } } }, 'remove'));
    stepsBox.append(row);
    renumber();
  }
  function renumber() {
    [...stepsBox.querySelectorAll('.step-no')].forEach((s, i) => { s.textContent = `${i + 1}.`; });
  }
  const saved = loadQuery(route);
  if (saved && Array.isArray(saved.steps) && saved.steps.length >= 2) {
    for (const st of saved.steps) addStep(String(st?.event ?? ''));
    if (saved.funnelWindow !== undefined) windowN.value = String(saved.funnelWindow);
    selectValue(windowUnit, saved.funnelWindowUnit);
    selectValue(order, saved.funnelOrder);
    selectValue(range, saved.dateFrom);
  } else {
    for (const e of events.slice(0, 3)) addStep(e);
  }
  while (stepsBox.children.length < 2) addStep();

  let c = null;
  async function run() {
    clear(msg);
    clear(results);
    const q = {
      steps: [...stepsBox.querySelectorAll('.step-event')].map((s) => ({ event: s.value })),
      funnelWindow: Number(windowN.value), funnelWindowUnit: windowUnit.value, funnelOrder: order.value,
      dateFrom: range.value, dateTo: 'now', timezone: 'UTC',
    };
    saveQuery('funnel', q);
    let r;
    try {
      r = await insight('funnel', q);
    } catch (e) {
      clear(msg, errorBox(e));
      return;
    }
    const steps = r.results[0]?.steps || [];
    if (c) c.destroy();
    c = chart(canvas, {
      type: 'bar',
      data: { labels: steps.map((s) => `${s.order + 1}. ${s.name}`), datasets: [{ label: 'actors', data: steps.map((s) => s.count), backgroundColor: PALETTE[0] }] },
      options: { layout: { padding: { top: 24 } }, plugins: { legend: { display: false }, conversionLabels: { rates: steps.map((s) => s.conversionRate) } }, scales: { y: { beginAtZero: true } } },
      plugins: [conversionLabels],
    });
    clear(results, table(
      [{ label: 'step' }, { label: 'actors', num: true }, { label: 'conversion', num: true }, { label: 'from previous', num: true }, { label: 'avg time', num: true }, { label: 'median time', num: true }],
      steps.map((s) => [`${s.order + 1}. ${s.name}`, fmtInt(s.count), fmtPct(s.conversionRate), fmtPct(s.stepConversionRate), fmtSeconds(s.averageConversionTime), fmtSeconds(s.medianConversionTime)]),
      { testid: 'funnel-table', cellTestid: (i, k) => (k === 1 ? `funnel-count-${i}` : k === 2 ? `funnel-conversion-${i}` : null) }));
  }

  clear(view, h('h1', {}, 'Funnel'),
    card(null, h('div', { class: 'form' },
      field('Steps', h('div', {}, stepsBox, h('button', { type: 'button', class: 'link', testid: 'funnel-add-step', onclick: () => addStep() }, '+ add step'))),
      field('Range', range), field('Window', h('span', {}, windowN, ' ', windowUnit)), field('Order', order),
      h('button', { type: 'button', testid: 'funnel-run', onclick: run }, 'Show'))),
    msg, card(null, box, results));
  if (events.length >= 2 || saved) await run();
}
