// lifecycle.js - POST /api/insights/lifecycle: per bucket, the persons who are new,
// returning, resurrecting (above the axis) and dormant (below); a stacked bar chart and a table.
import { table, fmtInt } from '../ui.js';
import { oneEventPage } from './one_event.js';

export const title = 'Lifecycle';

const COLOURS = { new: '#59a14f', returning: '#4e79a7', resurrecting: '#edc948', dormant: '#e15759' };

export function render(view, route) {
  return oneEventPage(view, route, 'lifecycle', title, (r) => {
    const labels = r.results[0]?.labels || [];
    return {
      config: {
        type: 'bar',
        data: { labels, datasets: r.results.map((s) => ({ label: s.status, data: s.data, backgroundColor: COLOURS[s.status] || '#999' })) },
        options: { scales: { x: { stacked: true }, y: { stacked: true } } },
      },
      table: table(
        [{ label: 'status' }, { label: 'total', num: true }, ...labels.map((l) => ({ label: l.slice(5, 16), num: true }))],
        r.results.map((s) => [s.status, fmtInt(s.data.reduce((a, b) => a + b, 0)), ...s.data.map(fmtInt)]),
        { testid: 'lifecycle-table', cellTestid: (i, k) => (k === 1 ? `lifecycle-total-${r.results[i].status}` : null) }),
    };
  });
}
