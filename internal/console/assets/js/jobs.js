// jobs.js: job history with filters, a group run now, and one job: its
// per-VM results, live progress, full log, and cancel.
import { get, post, enc, qs } from './api.js';
import { h, badge, when, dur, table, section, field, say, busy, isZero } from './ui.js';
import { liveProgress } from './progress.js';

const jobKinds = ['', 'backup', 'restore', 'export', 'verify', 'prune', 'copy', 'cleanup', 'instant'];
const states = ['', 'New', 'Running', 'Completed', 'PartiallyFailed', 'Failed', 'Cancelled'];

export async function jobs({ page, params, session }) {
  const f = { kind: params.get('kind') || '', state: params.get('state') || '', group: params.get('group') || '', limit: params.get('limit') || '50' };
  const [list, groups] = await Promise.all([get('/jobs' + qs(f)), get('/groups')]);
  const sel = (name, opts) => h('select', { name }, opts.map((o) => h('option', { value: o, selected: o === f[name] }, o || 'any')));
  const form = h('form', { class: 'row filters', onsubmit: (e) => {
    e.preventDefault();
    const d = new FormData(form);
    location.hash = '#/jobs' + qs(Object.fromEntries(d.entries()));
  } },
  field('Kind', sel('kind', jobKinds)), field('State', sel('state', states)),
  field('Group', sel('group', ['', ...groups.map((g) => g.name)])),
  field('Show', sel('limit', ['20', '50', '200', '1000'])), h('button', {}, 'Filter'));
  page.append(h('h1', {}, 'Jobs'));
  if (session.can('run')) page.append(runNow(groups));
  page.append(section('History', form, table([
    ['Job', (j) => h('a', { href: '#/jobs/' + enc(j.id) }, j.kind + ' ' + j.id.slice(-8))],
    ['Group', (j) => j.group || '—'],
    ['State', (j) => badge(j.state)],
    ['Queued', (j) => when(j.queued)],
    ['Took', (j) => isZero(j.finished) || isZero(j.started) ? '—' : dur((new Date(j.finished) - new Date(j.started)) / 1000)],
    ['VMs', (j) => vmCounts(j.vms || [])],
    ['Trigger', (j) => j.trigger || '—'],
  ], list.jobs || [], { caption: (list.jobs || []).length + ' jobs, newest first', empty: 'No job matches.' })));
}

function vmCounts(vms) {
  const c = {};
  for (const v of vms) c[v.state] = (c[v.state] || 0) + 1;
  return Object.entries(c).map(([k, n]) => n + ' ' + k.toLowerCase()).join(', ') || '—';
}

export function runNow(groups, fixed) {
  const g = h('select', { name: 'group' }, groups.map((x) => h('option', { value: x.name, selected: x.name === fixed }, x.name)));
  const k = h('select', { name: 'kind' }, ['backup', 'verify', 'prune', 'copy'].map((x) => h('option', { value: x }, x)));
  const full = h('input', { type: 'checkbox' });
  const btn = h('button', { class: 'primary' }, 'Run now');
  btn.addEventListener('click', (e) => {
    e.preventDefault();
    busy(btn, async () => {
      const j = await post('/groups/' + enc(g.value) + '/run', { kind: k.value, full: full.checked, read_data: k.value === 'verify' });
      say(k.value + ' of ' + g.value + ' queued.');
      location.hash = '#/jobs/' + enc(j.id);
    });
  });
  return section('Run a group now', h('form', { class: 'row' }, fixed ? null : field('Group', g), field('Job', k),
    h('label', { class: 'check' }, full, ' full read (backup)'), btn));
}

export async function job({ page, args, session, onLeave }) {
  const id = args[0];
  const j = await get('/jobs/' + enc(id));
  page.append(h('h1', {}, j.kind + ' job ', badge(j.state)),
    section('Job', h('dl', { class: 'facts' },
      ...fact('Id', h('code', {}, j.id)), ...fact('Group', j.group || '—'), ...fact('Trigger', j.trigger || '—'),
      ...fact('Queued', when(j.queued)), ...fact('Started', when(j.started)), ...fact('Finished', when(j.finished)),
      ...fact('Error', j.error || '—'))));
  if (!['Completed', 'PartiallyFailed', 'Failed', 'Cancelled'].includes(j.state)) {
    const lp = liveProgress(id, () => setTimeout(() => { if (location.hash === '#/jobs/' + enc(id)) window.dispatchEvent(new HashChangeEvent('hashchange')); }, 300));
    onLeave(lp.stop);
    const cancel = session.can('run') ? h('button', { class: 'danger', onclick: (e) => busy(e.target, async () => {
      await post('/jobs/' + enc(id) + '/cancel');
      say('Cancel requested.');
    }) }, j.cancel_requested ? 'Cancel requested' : 'Cancel') : null;
    page.append(section('Progress', lp.el, cancel));
  }
  page.append(section('VMs', table([
    ['VM', (v) => v.vm_uuid ? h('a', { href: '#/vms/' + enc(v.vm_uuid) }, v.vm_name) : v.vm_name],
    ['Result', (v) => badge(v.state)], ['Attempts', (v) => String(v.attempts)],
    ['Point', (v) => v.point_id ? h('a', { href: '#/points/' + enc(v.point_id) }, v.point_id) : '—'],
    ['Error', (v) => v.error || ''],
  ], j.vms || [], { empty: 'This job has no per-VM results.' })));
  const logBox = h('div');
  page.append(section('Log', logBox));
  await showLog(logBox, id, 0);
  if (j.summary) page.append(h('details', { class: 'card' }, h('summary', {}, 'Summary (JSON)'), h('pre', {}, JSON.stringify(j.summary, null, 2))));
}

const fact = (k, v) => [h('dt', {}, k), h('dd', {}, v)];

// showLog appends a job's log lines after seq, 1000 at a time.
async function showLog(box, id, after) {
  const lines = await get('/jobs/' + enc(id) + '/log' + qs({ after, limit: 1000 }));
  if (!lines.length && !after) { box.append(h('p', { class: 'muted' }, 'No log lines.')); return; }
  box.append(h('pre', { class: 'log', tabindex: '0' }, lines.map((l) => {
    const attrs = l.attrs ? ' ' + Object.entries(l.attrs).map(([k, v]) => k + '=' + (typeof v === 'string' ? v : JSON.stringify(v))).join(' ') : '';
    return h('span', { class: 'lvl-' + l.level.toLowerCase() }, new Date(l.time).toLocaleTimeString() + ' ' + l.level + ' ' + l.message + attrs + '\n');
  })));
  if (lines.length === 1000) {
    const more = h('button', { onclick: () => { more.remove(); showLog(box, id, lines[lines.length - 1].seq); } }, 'More');
    box.append(more);
  }
}
