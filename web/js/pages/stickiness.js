// stickiness.js - POST /api/insights/stickiness: how many persons were active in exactly
// 1, 2, 3 ... buckets of the range; a bar chart per series and a table.
import { table, fmtInt, PALETTE } from '../ui.js';
import { oneEventPage } from './one_event.js';

export const title = 'Stickiness';

export function render(view, route) {
  return oneEventPage(view, route, 'stickiness', title, (r) => {
    const labels = r.results[0]?.labels || [];
    return {
      config: {
        type: 'bar',
        data: { labels, datasets: r.results.map((s, i) => ({ label: s.label, data: s.data, backgroundColor: PALETTE[i % PALETTE.length] })) },
        options: { scales: { y: { beginAtZero: true, title: { display: true, text: 'persons' } } } },
      },
      table: table(
        [{ label: 'series' }, { label: 'persons', num: true }, ...labels.map((l) => ({ label: l, num: true }))],
        r.results.map((s) => [s.label, fmtInt(s.count), ...s.data.map(fmtInt)]),
        { testid: 'stickiness-table', cellTestid: (i, k) => (k === 1 ? `stickiness-count-${i}` : k >= 2 ? `stickiness-${i}-${k - 2}` : null) }),
    };
  });
}
