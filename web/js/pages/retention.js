// retention.js - POST /api/insights/retention: a cohort table, each cell shaded by the share
// of the cohort that came back in that period.
import { insight, listEvents } from '../api.js';
import { h, clear, card, errorBox, select, field, fmtInt, saveQuery, loadQuery, selectValue } from '../ui.js';

export const title = 'Retention';

export async function render(view, route) {
  const events = await listEvents();
  const target = select(events, events.includes('signup') ? 'signup' : events[0], { testid: 'retention-target' });
  const returning = select(events, events.includes('purchase') ? 'purchase' : events[0], { testid: 'retention-returning' });
  const period = select(['day', 'week', 'month'], 'day', { testid: 'retention-period' });
  const intervals = h('input', { type: 'number', min: 1, max: 100, value: 7, class: 'narrow', testid: 'retention-intervals' });
  const type = select([['recurring', 'recurring'], ['first_time', 'first time']], 'recurring', { testid: 'retention-type' });
  const results = h('div');
  const msg = h('div');
  const saved = loadQuery(route);
  if (saved) {
    selectValue(target, saved.targetEvent?.event);
    selectValue(returning, saved.returningEvent?.event);
    selectValue(period, saved.period);
    if (saved.totalIntervals !== undefined) intervals.value = String(saved.totalIntervals);
    selectValue(type, saved.retentionType);
  }

  async function run() {
    clear(msg);
    clear(results);
    const q = {
      targetEvent: { event: target.value }, returningEvent: { event: returning.value },
      period: period.value, totalIntervals: Number(intervals.value), retentionType: type.value, dateTo: 'now', timezone: 'UTC',
    };
    saveQuery('retention', q);
    let r;
    try {
      r = await insight('retention', q);
    } catch (e) {
      clear(msg, errorBox(e));
      return;
    }
    const n = r.results.length;
    const head = h('tr', {}, h('th', {}, 'cohort'), h('th', { class: 'num' }, 'size'),
      Array.from({ length: n }, (_, k) => h('th', { class: 'num' }, `${period.value} ${k}`)));
    const rows = r.results.map((c, i) => h('tr', { testid: `retention-row-${i}` },
      h('td', { testid: `retention-date-${i}` }, c.date),
      h('td', { class: 'num', testid: `retention-size-${i}` }, fmtInt(c.cohortSize)),
      Array.from({ length: n }, (_, k) => {
        const v = c.values[k];
        if (!v) return h('td', { class: 'heat empty' });
        const p = v.percentage;
        // white to blue by the share; the text turns white on dark cells
        const td = h('td', { class: 'heat num', testid: `retention-cell-${i}-${k}`, title: `${fmtInt(v.count)} of ${fmtInt(c.cohortSize)}` },
          h('span', { class: 'pct' }, `${p.toFixed(1)}%`), h('span', { class: 'cnt' }, fmtInt(v.count)));
        td.style.backgroundColor = `rgba(37, 99, 235, ${(0.08 + 0.82 * p / 100).toFixed(3)})`;
        if (p > 55) td.style.color = '#fff';
        return td;
      })));
    clear(results, h('table', { class: 'grid cohort', testid: 'retention-table' }, h('thead', {}, head), h('tbody', {}, rows)));
  }

  clear(view, h('h1', {}, 'Retention'),
    card(null, h('div', { class: 'form' },
      field('Cohort event', target), field('Returning event', returning), field('Period', period),
      field('Periods', intervals), field('Type', type),
      h('button', { type: 'button', testid: 'retention-run', onclick: run }, 'Show'))),
    msg, card(null, results));
  if (events.length || saved) await run();
}
