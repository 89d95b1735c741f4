// app.js - hash routes (#/overview, #/trends, ...), the sign-in gate and the page frame.
import { auth, setUnauthorizedHandler, forgetEvents } from './api.js';
import { clear, destroyCharts, errorBox } from './ui.js';
import * as signin from './pages/signin.js';
import * as overview from './pages/overview.js';
import * as trends from './pages/trends.js';
import * as funnel from './pages/funnel.js';
import * as retention from './pages/retention.js';
import * as sqlPage from './pages/sql.js';
import * as collections from './pages/collections.js';

const pages = { overview, trends, funnel, retention, sql: sqlPage, collections };
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

async function route() {
  if (cleanup) { try { cleanup(); } catch { /* page already gone */ } cleanup = null; }
  destroyCharts();
  const r = parseHash();
  if (!auth.token) {
    top.hidden = true;
    document.title = 'Sign in · tandem';
    cleanup = signin.render(view, () => { forgetEvents(); location.hash = r.name === 'signin' ? '#/overview' : location.hash || '#/overview'; route(); });
    return;
  }
  const page = pages[r.name];
  top.hidden = false;
  document.getElementById('who').textContent = auth.email;
  for (const a of top.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.route === r.name);
  if (!page) {
    clear(view, errorBox(`No page named "${r.name}".`));
    return;
  }
  document.title = `${page.title} · tandem`;
  clear(view);
  try {
    cleanup = (await page.render(view, r)) || null;
  } catch (e) {
    clear(view, errorBox(e));
  }
}

setUnauthorizedHandler(() => { auth.clear(); route(); });
document.getElementById('signout').addEventListener('click', () => { auth.clear(); route(); });
window.addEventListener('hashchange', route);
route();
