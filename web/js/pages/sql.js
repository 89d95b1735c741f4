// sql.js - the SQL console: POST /api/warehouse/sql, results as a table, CSV download.
import { sql } from '../api.js';
import { h, clear, card, table, errorBox, download, toCsv, fmtInt } from '../ui.js';

export const title = 'SQL';

const DEFAULT = 'SELECT event, count(*) AS events, count(DISTINCT coalesce(user_id, anonymous_id)) AS users\nFROM events\nWHERE event IS NOT NULL\nGROUP BY event\nORDER BY events DESC\nLIMIT 100';
const KEY = 'tandem.sql';

export function render(view) {
  const text = h('textarea', { class: 'sql', rows: 8, spellcheck: 'false', testid: 'sql-input' });
  text.value = sessionStorage.getItem(KEY) || DEFAULT;
  const info = h('div', { class: 'muted' });
  const out = h('div');
  let last = null;
  const csv = h('button', { type: 'button', class: 'secondary', disabled: true, testid: 'sql-csv', onclick: () => {
    if (last) download('result.csv', 'text/csv;charset=utf-8', toCsv(last.columns.map((c) => c.name), last.rows));
  } }, 'Download CSV');
  const runBtn = h('button', { type: 'button', testid: 'sql-run' }, 'Run');

  async function run() {
    sessionStorage.setItem(KEY, text.value);
    runBtn.disabled = true;
    csv.disabled = true;
    last = null;
    clear(info, 'Running…');
    clear(out);
    try {
      const r = await sql(text.value);
      last = r;
      clear(info, h('span', { testid: 'sql-row-count' }, fmtInt(r.rowCount)), r.rowCount === 1 ? ' row' : ' rows',
        r.truncated ? ' (truncated)' : '', ` in ${r.elapsedMs.toFixed(1)} ms`);
      clear(out, table(r.columns.map((c) => ({ label: `${c.name} (${c.type})`, num: /INT|DOUBLE|FLOAT|DECIMAL|REAL/.test(c.type) })), r.rows,
        { testid: 'sql-results', cellTestid: (i, k) => `sql-cell-${i}-${k}` }));
      csv.disabled = false;
    } catch (e) {
      clear(info);
      clear(out, errorBox(e));
    } finally {
      runBtn.disabled = false;
    }
  }
  runBtn.addEventListener('click', run);
  text.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(); } });

  clear(view, h('h1', {}, 'SQL console'),
    card(null, text, h('div', { class: 'toolbar' }, runBtn, csv, h('span', { class: 'muted' }, 'Ctrl+Enter runs; read-only queries over events, changes and app_* tables')), info),
    card(null, h('div', { class: 'scroll' }, out)));
}
