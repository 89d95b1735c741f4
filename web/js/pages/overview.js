// overview.js - live numbers: events per second over the last 10 minutes, events received,
// the top events of the last 24 hours (all from the warehouse's SQL API) and the pipeline's
// consumers and lag (GET /api/pipeline), and the capture counters since the server started
// (GET /metrics). Refreshes every 5 s while open.
import { sql, pipeline, metrics } from '../api.js';
import { h, clear, card, stat, table, chart, chartBox, errorBox, fmtInt, fmtNum, PALETTE } from '../ui.js';

export const title = 'Overview';

const BUCKET_S = 10;
const WINDOW_S = 600;
const REFRESH_MS = 5000;

// 'YYYY-MM-DD HH:MM:SS.mmm' in UTC: what the warehouse's TIMESTAMP columns hold.
const sqlTime = (ms) => new Date(ms).toISOString().replace('T', ' ').replace('Z', '');

export async function render(view) {
  const stats = h('div', { class: 'stats' });
  const [rateBox, rateCanvas] = chartBox('chart-rate');
  const [topBox, topCanvas] = chartBox('chart-top');
  const topTable = h('div');
  const pipeBox = h('div');
  const msg = h('div');
  clear(view,
    h('h1', {}, 'Overview'), msg, stats,
    h('div', { class: 'row' },
      card(`Events per second, last ${WINDOW_S / 60} minutes`, rateBox),
      card('Top events, received in the last 24 hours', topBox, topTable)),
    card('Pipeline', pipeBox));

  let rateChart = null;
  let topChart = null;
  let stopped = false;

  async function refresh() {
    const now = Date.now();
    const from = Math.floor((now - WINDOW_S * 1000) / (BUCKET_S * 1000)) * BUCKET_S * 1000;
    const [rate, totals, top, pipe, m] = await Promise.all([
      sql(`SELECT (floor(epoch(received_at) / ${BUCKET_S}) * ${BUCKET_S})::BIGINT AS b, count(*) AS n FROM events WHERE received_at >= $1::TIMESTAMP GROUP BY 1 ORDER BY 1`, [sqlTime(from)]),
      sql('SELECT count(*) AS total, count(*) FILTER (WHERE received_at >= $1::TIMESTAMP) AS last_minute, count(*) FILTER (WHERE received_at >= $2::TIMESTAMP) AS last_window FROM events', [sqlTime(now - 60000), sqlTime(now - WINDOW_S * 1000)]),
      sql("SELECT event, count(*) AS n FROM events WHERE event IS NOT NULL AND received_at >= $1::TIMESTAMP GROUP BY event ORDER BY n DESC, event LIMIT 10", [sqlTime(now - 86400000)]),
      pipeline().catch((e) => ({ error: e })),
      metrics().catch(() => new Map()),
    ]);
    const accepted = m.get('tandem_capture_events_total{outcome="accepted"}');
    if (stopped) return;

    // zero-filled buckets of BUCKET_S seconds
    const byBucket = new Map(rate.rows.map(([b, n]) => [b * 1000, n]));
    const labels = [];
    const data = [];
    for (let t = from; t <= now; t += BUCKET_S * 1000) {
      labels.push(new Date(t).toISOString().slice(11, 19));
      data.push((byBucket.get(t) || 0) / BUCKET_S);
    }
    const [total, lastMinute, lastWindow] = totals.rows[0];
    let maxLagS = 0;
    let lagRecords = 0;
    for (const c of pipe.consumers || []) {
      maxLagS = Math.max(maxLagS, c.lagSeconds);
      lagRecords += c.lagRecords;
    }
    clear(stats,
      stat('events/s, last minute', fmtNum(lastMinute / 60), 'overview-rate'),
      stat(`events, last ${WINDOW_S / 60} minutes`, fmtInt(lastWindow), 'overview-recent'),
      stat('events in the warehouse', fmtInt(total), 'overview-total'),
      stat('events accepted since start', accepted === undefined ? '–' : fmtInt(accepted), 'overview-accepted'),
      stat('pipeline lag, records', pipe.error ? '–' : fmtInt(lagRecords), 'pipeline-lag-records'),
      stat('pipeline lag, seconds', pipe.error ? '–' : fmtNum(maxLagS), 'pipeline-lag-seconds'));

    if (!rateChart) {
      rateChart = chart(rateCanvas, {
        type: 'line',
        data: { labels, datasets: [{ label: 'events/s', data, borderColor: PALETTE[0], backgroundColor: 'rgba(78,121,167,0.2)', fill: true, pointRadius: 0, tension: 0.2 }] },
        options: { plugins: { legend: { display: false } }, scales: { x: { ticks: { maxTicksLimit: 11 } }, y: { beginAtZero: true } } },
      });
    } else {
      rateChart.data.labels = labels;
      rateChart.data.datasets[0].data = data;
      rateChart.update();
    }

    const names = top.rows.map((r) => r[0]);
    const counts = top.rows.map((r) => r[1]);
    if (!topChart) {
      topChart = chart(topCanvas, {
        type: 'bar',
        data: { labels: names, datasets: [{ label: 'events', data: counts, backgroundColor: PALETTE[1] }] },
        options: { indexAxis: 'y', plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } },
      });
    } else {
      topChart.data.labels = names;
      topChart.data.datasets[0].data = counts;
      topChart.update();
    }
    clear(topTable, table([{ label: 'event' }, { label: 'count', num: true }],
      top.rows.map(([e, n]) => [e, fmtInt(n)]), { testid: 'top-events', cellTestid: (i, k) => (k === 0 ? `top-event-name-${i}` : `top-event-count-${i}`) }));

    if (pipe.error) {
      clear(pipeBox, errorBox(pipe.error));
    } else {
      clear(pipeBox, table(
        [{ label: 'consumer' }, { label: 'committed', num: true }, { label: 'log end', num: true }, { label: 'lag (records)', num: true },
          { label: 'lag (s)', num: true }, { label: 'rows loaded', num: true }, { label: 'rejects', num: true }, { label: 'last error' }],
        pipe.consumers.map((c) => [c.consumer, fmtInt(c.committedOffset), fmtInt(c.logEndOffset), fmtInt(c.lagRecords), fmtNum(c.lagSeconds),
          fmtInt(c.rowsLoaded), fmtInt(c.rejects), c.lastError || '']),
        { testid: 'pipeline', rowTestid: (i) => `pipeline-${pipe.consumers[i].consumer}` }));
    }
  }

  let timer = null;
  const loop = async () => {
    try {
      await refresh();
      clear(msg);
    } catch (e) {
      if (!stopped) clear(msg, errorBox(e));
    }
    if (!stopped) timer = setTimeout(loop, REFRESH_MS);
  };
  await loop();
  return () => { stopped = true; clearTimeout(timer); };
}
