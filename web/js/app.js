// app.js - hash routes (#/overview, #/trends, ...), the sign-in gate and the page frame.
import { auth, setUnauthorizedHandler, forgetEvents } from './api.js';
import { clear, destroyCharts, errorBox } from './ui.js';
import * as signin from './pages/signin.js';
import * as overview from './pages/overview.js';
import * as trends from './pages/trends.js';
import * as funnel from './pages/funnel.js';
import * as retention from './pages/retention.js';
import * as stickiness from './pages/stickiness.js';
import * as lifecycle from './pages/lifecycle.js';
import * as sqlPage from './pages/sql.js';
import * as collections from './pages/collections.js';
import * as models from './pages/models.js';
import * as ml from './pages/ml.js';

const pages = { overview, trends, funnel, retention, stickiness, lifecycle, sql: sqlPage, collections, models, ml };
// what an analyst may open: the insights and the SQL console (docs/governance.md)
const analystPages = new Set(['trends', 'funnel', 'retention', 'stickiness', 'lifecycle', 'sql']);
const view = document.getElementById('view');
const top = document.getElementById('top');
let cleanup = null;

// "#/collections/posts?page=2" -> {name: 'collections', args: ['posts'], query: URLSearchParams}
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, qs = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || 'overview', args: parts.slice(1), query: new URLSearchParams(qs) };
}

// Each route renders into a fresh container and gets a generation number: a page whose
// loading finishes after the user moved on writes into its own detached container, and its
// cleanup (timers) runs at once instead of replacing the current page's.
let generation = 0;

async function route() {
  const mine = ++generation;
  if (cleanup) { try { cleanup(); } catch { /* page already gone */ } cleanup = null; }
  destroyCharts();
  const r = parseHash();
  const box = document.createElement('div');
  clear(view, box);
  const keep = (fn) => {
    if (typeof fn !== 'function') return;
    if (mine === generation) cleanup = fn;
    else fn();
  };
  if (!auth.token) {
    top.hidden = true;
    document.title = 'Sign in · tandem';
    keep(signin.render(box, () => {
      forgetEvents();
      // one route: a changed hash routes through hashchange, an unchanged one here
      const home = auth.analyst ? '#/trends' : '#/overview';
      const target = r.name === 'signin' || !location.hash ? home : location.hash;
      if (location.hash === target) route();
      else location.hash = target;
    }));
    return;
  }
  if (auth.analyst && !analystPages.has(r.name)) {
    location.hash = '#/trends';
    return;
  }
  const page = pages[r.name];
  top.hidden = false;
  document.getElementById('who').textContent = auth.email;
  for (const a of top.querySelectorAll('nav a')) {
    a.classList.toggle('active', a.dataset.route === r.name);
    a.hidden = auth.analyst && !analystPages.has(a.dataset.route);
  }
  if (!page) {
    clear(box, errorBox(`No page named "${r.name}".`));
    return;
  }
  document.title = `${page.title} · tandem`;
  try {
    keep(await page.render(box, r));
  } catch (e) {
    clear(box, errorBox(e));
  }
}

setUnauthorizedHandler(() => { auth.clear(); route(); });
document.getElementById('signout').addEventListener('click', () => { auth.clear(); route(); });
window.addEventListener('hashchange', route);
route();
