// ml.js - the ML page (#/ml, #/ml/<name>): models and their versions with metrics, the ROC
// curve, feature importance bars, and a form that scores one row (docs/ml.md).
import { request } from '../api.js';
import { h, clear, card, table, errorBox, chart, chartBox, fmtNum, fmtInt, PALETTE } from '../ui.js';

export const title = 'ML';

const metricCell = (m) => (m === null || m === undefined ? '–' : fmtNum(m));

function versionRows(model) {
  return model.versions.slice().reverse().map((v) => {
    const m = v.metrics || {};
    const main = v.metric ? `${v.metric.name} ${metricCell(v.metric.value)}` : '';
    const key = m.auc !== undefined ? `AUC ${metricCell(m.auc)}` : m.rmse !== undefined ? `RMSE ${metricCell(m.rmse)}` : m.accuracy !== undefined ? `acc ${metricCell(m.accuracy)}` : '';
    const status = v.status === 'training' && v.round !== undefined ? `training (round ${v.round})` : v.status;
    return [String(v.version) + (model.active === v.version ? ' (active)' : ''), status, main, key,
      v.rows ? `${fmtInt(v.rows.train)} / ${fmtInt(v.rows.valid)}` : '',
      v.source ? `model ${v.source.model}, run ${v.source.run?.id ?? '–'}` : v.spec?.model ? `model ${v.spec.model}` : 'query',
      (v.trigger === 'modelRun' ? 'after a model run' : v.trigger === 'schedule' ? 'scheduled' : 'request'),
      v.finished || v.created, v.error || ''];
  });
}

function listPage(box, items) {
  const rows = items.map((m) => [h('a', { href: `#/ml/${encodeURIComponent(m.name)}`, testid: `ml-model-${m.name}` }, m.name), m.task || '',
    m.active ?? '–', fmtInt(m.versionCount), m.activeMetrics ? Object.entries(m.activeMetrics).filter(([, v]) => typeof v === 'number').map(([k, v]) => `${k} ${fmtNum(v)}`).join(', ') : '']);
  clear(box, h('h1', {}, 'Models'),
    card(null, items.length ? table([{ label: 'model' }, { label: 'task' }, { label: 'active' }, { label: 'versions', num: true }, { label: 'active metrics' }], rows, { testid: 'ml-models' })
      : h('p', { class: 'muted', testid: 'ml-empty' }, 'No model yet: POST /api/ml/models or `tandem ml train` (docs/ml.md).')));
}

function scoreForm(model, active) {
  const inputs = active.features.map((f) => {
    const input = f.type === 'categorical'
      ? h('select', { testid: `ml-input-${f.name}` }, h('option', { value: '' }, '(missing)'), f.categories.map((c) => h('option', { value: c }, c)))
      : h('input', { type: 'number', step: 'any', testid: `ml-input-${f.name}`, placeholder: 'missing' });
    return [f, input];
  });
  const out = h('div', { testid: 'ml-score-result' });
  const btn = h('button', { type: 'button', testid: 'ml-score' }, 'Score');
  btn.addEventListener('click', async () => {
    const row = {};
    for (const [f, input] of inputs) {
      const v = input.value;
      row[f.name] = v === '' ? null : f.type === 'categorical' ? v : Number(v);
    }
    try {
      const r = await request('POST', `/api/ml/models/${encodeURIComponent(model.name)}/predict`, { rows: [row], contributions: true });
      const p = r.predictions[0];
      const contrib = p.contributions && !Array.isArray(p.contributions) ? Object.entries(p.contributions).map(([k, v]) => `${k} ${fmtNum(v)}`).join(', ') : '';
      clear(out, h('div', {}, h('strong', { testid: 'ml-score-value' }, p.score !== undefined ? fmtNum(p.score) : `class ${p.label}`),
        p.label !== undefined ? ` (label ${p.label})` : '', ` · version ${r.version}`), contrib ? h('div', { class: 'muted' }, `contributions: ${contrib}`) : null);
    } catch (e) {
      clear(out, errorBox(e));
    }
  });
  return card('Score one row', h('div', { class: 'toolbar' }, inputs.map(([f, input]) => h('label', { class: 'field' }, h('span', {}, f.name), input))), btn, out);
}

function modelPage(box, model) {
  const active = model.versions.find((v) => v.version === model.active);
  const parts = [h('h1', {}, `Model ${model.name}`),
    card('Versions', table([{ label: 'version' }, { label: 'status' }, { label: 'validation metric' }, { label: 'key metric' }, { label: 'rows train / valid' }, { label: 'data' }, { label: 'trigger' }, { label: 'finished' }, { label: 'error' }],
      versionRows(model), { testid: 'ml-versions' }))];
  const charts = [];
  if (active?.metrics?.roc) {
    const [box1, canvas] = chartBox('ml-roc');
    parts.push(card(`ROC curve (version ${active.version}, AUC ${fmtNum(active.metrics.auc)})`, box1));
    charts.push(() => chart(canvas, { type: 'line', data: { datasets: [{ label: 'ROC', data: active.metrics.roc.map(([x, y]) => ({ x, y })), borderColor: PALETTE[0], pointRadius: 0 },
      { label: 'chance', data: [{ x: 0, y: 0 }, { x: 1, y: 1 }], borderColor: '#bbb', borderDash: [4, 4], pointRadius: 0 }] },
    options: { scales: { x: { type: 'linear', min: 0, max: 1, title: { display: true, text: 'false positive rate' } }, y: { min: 0, max: 1, title: { display: true, text: 'true positive rate' } } } } }));
  }
  if (active?.metrics?.confusion) {
    parts.push(card('Confusion matrix (rows: true class)', table(active.metrics.confusion[0].map((_, k) => ({ label: `pred ${k}`, num: true })), active.metrics.confusion, { testid: 'ml-confusion' })));
  }
  if (active?.importance?.gain) {
    const gain = Object.entries(active.importance.gain).sort((a, b) => b[1] - a[1]);
    const [box2, canvas] = chartBox('ml-importance');
    parts.push(card('Feature importance (total gain)', box2));
    charts.push(() => chart(canvas, { type: 'bar', data: { labels: gain.map(([k]) => k), datasets: [{ label: 'gain', data: gain.map(([, v]) => v), backgroundColor: PALETTE[1] }] },
      options: { indexAxis: 'y' } }));
  }
  if (active) parts.push(scoreForm(model, active));
  if (model.scoring) parts.push(card('Scoring job', h('p', { testid: 'ml-scoring' }, `${model.scoring.status}: ${fmtInt(model.scoring.rows)} rows into ${model.score?.collection} at ${model.scoring.finished}`, model.scoring.error ? ` (${model.scoring.error})` : '')));
  clear(box, ...parts);
  charts.forEach((f) => f());
}

export async function render(box, r) {
  if (r.args[0]) {
    modelPage(box, await request('GET', `/api/ml/models/${encodeURIComponent(r.args[0])}`));
    return;
  }
  listPage(box, (await request('GET', '/api/ml/models')).items);
}
