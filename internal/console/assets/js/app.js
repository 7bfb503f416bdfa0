// app.js: the console's shell: who is signed in, the navigation a role
// may use, and the hash routes (#/jobs?state=Failed) of the pages.
import { get, post, setCSRF, onUnauthorized } from './api.js';
import { session, signedIn } from './session.js';
import { h, say, zone } from './ui.js';
import { dashboard } from './dashboard.js';
import { vmPoints, pointDetail } from './points.js';
import { files } from './files.js';
import { restore } from './restore.js';
import { jobs, job } from './jobs.js';
import { groups, groupEdit } from './groups.js';
import { schedules, notifications } from './settings.js';
import { users, tokens, audit, login } from './access.js';

const routes = [
  [/^\/$/, dashboard, 'Dashboard'],
  [/^\/vms\/([^/]+)$/, vmPoints, 'Points'],
  [/^\/points\/([^/]+)$/, pointDetail, 'Point'],
  [/^\/files\/([^/]+)$/, files, 'Files'],
  [/^\/restore$/, restore, 'Restore'],
  [/^\/jobs$/, jobs, 'Jobs'],
  [/^\/jobs\/([^/]+)$/, job, 'Job'],
  [/^\/groups$/, groups, 'Groups'],
  [/^\/groups\/([^/]+)$/, groupEdit, 'Group'],
  [/^\/schedules$/, schedules, 'Schedules'],
  [/^\/notifications$/, notifications, 'Notifications'],
  [/^\/users$/, users, 'Users'],
  [/^\/tokens$/, tokens, 'Tokens'],
  [/^\/audit$/, audit, 'Audit'],
  [/^\/login$/, login, 'Sign in'],
];

function navItems() {
  const items = [['#/', 'Dashboard'], ['#/restore', 'Restore'], ['#/jobs', 'Jobs']];
  if (session.can('all')) items.push(['#/groups', 'Groups'], ['#/schedules', 'Schedules'], ['#/notifications', 'Notifications']);
  if (session.can('configure')) items.push(['#/users', 'Users']);
  items.push(['#/tokens', 'Tokens']);
  if (session.can('audit')) items.push(['#/audit', 'Audit']);
  return items;
}

function drawNav(path) {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!session.user) { nav.replaceChildren(); who.replaceChildren(); return; }
  nav.replaceChildren(h('ul', {}, navItems().map(([href, text]) => {
    const cur = href.slice(1) === path || (href !== '#/' && path.startsWith(href.slice(1)));
    return h('li', {}, h('a', { href, 'aria-current': cur ? 'page' : null }, text));
  })));
  who.replaceChildren(h('span', {}, session.user + ' (' + session.role + ')'),
    h('button', { class: 'link', onclick: signOut }, 'Sign out'));
}

async function signOut() {
  try { await post('/logout'); } catch { /* signed out anyway */ }
  session.user = '';
  setCSRF('');
  location.hash = '#/login';
}

let cleanups = [];
let generation = 0;

async function render() {
  const t0 = performance.now();
  const gen = ++generation;
  for (const fn of cleanups) fn();
  cleanups = [];
  const raw = location.hash.slice(1) || '/';
  const [path, query] = raw.split('?');
  const params = new URLSearchParams(query || '');
  if (!session.user && path !== '/login') {
    try {
      signedIn(await get('/whoami'));
    } catch {
      location.hash = '#/login?next=' + encodeURIComponent(raw);
      return;
    }
  }
  drawNav(path);
  document.getElementById('nav').classList.remove('open');
  const main = document.getElementById('main');
  const page = h('div', { class: 'page' });
  main.replaceChildren(page);
  delete document.documentElement.dataset.ready;
  const route = routes.find(([re]) => re.test(path));
  if (!route) { page.append(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the dashboard'))); return; }
  const [re, fn, title] = route;
  document.title = title + ' · kura';
  const args = path.match(re).slice(1).map(decodeURIComponent);
  try {
    await fn({ page, params, args, session, onLeave: (f) => cleanups.push(f) });
  } catch (e) {
    if (e.status === 401) return;
    page.append(h('p', { class: 'msg msg-error' }, e.message));
  }
  if (gen !== generation) return; // another route was entered meanwhile
  document.documentElement.dataset.renderMs = (performance.now() - t0).toFixed(1);
  document.documentElement.dataset.ready = title;
  const h1 = page.querySelector('h1');
  if (h1 && document.activeElement === document.body) { h1.tabIndex = -1; h1.focus({ preventScroll: true }); }
}

onUnauthorized(() => {
  if (!session.user) return;
  session.user = '';
  say('Your session ended: sign in again.', 'error');
  location.hash = '#/login?next=' + encodeURIComponent(location.hash.slice(1));
});

document.getElementById('menu').addEventListener('click', (e) => {
  const open = document.getElementById('nav').classList.toggle('open');
  e.currentTarget.setAttribute('aria-expanded', String(open));
});
document.getElementById('foot').textContent = 'Times are shown in ' + zone() + '.';
window.addEventListener('hashchange', render);
render();
