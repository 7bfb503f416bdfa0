// groups.js: protection groups: the list, and the editor with a live
// preview of the VMs the selectors match, schedules, retention with its
// simulation drawn as a timeline of kept points, bandwidth windows and
// restore rights. Saving replaces the group through the API.
import { get, post, put, del, enc } from './api.js';
import { h, s, table, section, field, say, busy, debounce, lines, dur } from './ui.js';
import { runNow } from './jobs.js';

export async function groups({ page, session }) {
  const [gs, vms] = await Promise.all([get('/groups'), get('/vms')]);
  const members = {};
  for (const v of vms) for (const g of v.groups) members[g] = (members[g] || 0) + 1;
  page.append(h('h1', {}, 'Protection groups'));
  if (session.can('configure')) page.append(h('p', {}, h('a', { class: 'button primary', href: '#/groups/+new' }, 'New group')));
  page.append(section('Groups', table([
    ['Group', (g) => h('a', { href: '#/groups/' + enc(g.name) }, g.name)],
    ['Selectors', (g) => (g.selectors || []).join(' ')],
    ['VMs now', (g) => String(members[g.name] || 0)],
    ['RPO', (g) => g.rpo || '—'],
    ['Schedules', (g) => (g.schedules || []).map(schedText).join('; ') || '—'],
    ['Retention', (g) => retentionText(g.retention) || 'keeps everything'],
  ], gs, { empty: 'No group yet.' })));
  if (session.can('run') && gs.length) page.append(runNow(gs));
}

export const schedText = (sc) => sc.kind + ' ' + (sc.cron || 'every ' + sc.every) + (sc.timezone ? ' ' + sc.timezone : '');

const rules = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'quarterly', 'yearly'];
const retentionText = (r) => r ? [...rules.filter((k) => r[k]).map((k) => k + ' ' + r[k]), r.within ? 'within ' + r.within : ''].filter(Boolean).join(', ') : '';

export async function groupEdit({ page, args, session }) {
  const isNew = args[0] === '+new';
  const g = isNew ? { name: '', selectors: [], schedules: [{ kind: 'backup', cron: '0 1 * * *' }], retention: { daily: 7, weekly: 4 } } : await get('/groups/' + enc(args[0]));
  const ro = !session.can('configure');
  page.append(h('h1', {}, isNew ? 'New group' : 'Group ' + g.name));
  const inp = (attrs) => h('input', attrs);
  const name = inp({ id: 'g-name', value: g.name, required: true, readonly: !isNew, pattern: '[A-Za-z0-9][A-Za-z0-9._-]*' });
  const sels = h('textarea', { id: 'g-selectors', rows: '3', placeholder: 'name:web-*\ntag:nightly' });
  sels.value = (g.selectors || []).join('\n');
  const rpo = inp({ id: 'g-rpo', value: g.rpo || '', placeholder: '26h' });
  const cons = h('select', { id: 'g-consistency' }, ['', 'auto', 'application', 'crash', 'pause'].map((x) =>
    h('option', { value: x, selected: (g.consistency || '') === x }, x || 'default (auto)')));
  const repo = inp({ value: g.repository || '', placeholder: 'the first repository' });
  const conns = inp({ value: (g.connections || []).join(', '), placeholder: 'every connection' });
  const preview = h('div', { id: 'g-preview', 'aria-live': 'polite' });

  const retIn = {};
  const ret = g.retention || {};
  const retBox = h('div', { class: 'row' }, rules.map((k) => field(k, retIn[k] = inp({ id: 'g-ret-' + k, type: 'number', min: '0', value: ret[k] || '', class: 'short' }))),
    field('within', retIn.within = inp({ id: 'g-ret-within', value: ret.within || '', placeholder: '7d', class: 'short' })));
  const sim = h('div', { id: 'g-sim', 'aria-live': 'polite' });

  const schedRows = h('div', { class: 'rows' });
  const addSched = (sc) => schedRows.append(schedRow(sc));
  (g.schedules || []).forEach(addSched);
  const bw = g.bandwidth || {};
  const bwLimit = inp({ value: bw.limit && bw.limit !== '0' ? bw.limit : '', placeholder: 'unlimited, or 100MB/s' });
  const bwZone = inp({ value: bw.timezone || '', placeholder: 'the server\'s zone' });
  const winRows = h('div', { class: 'rows' });
  const addWin = (w) => winRows.append(windowRow(w));
  (bw.windows || []).forEach(addWin);
  const rs = h('textarea', { rows: '2' });
  rs.value = ((g.restore || {}).storage || []).join('\n');
  const rn = h('textarea', { rows: '2' });
  rn.value = ((g.restore || {}).networks || []).join('\n');

  // draft is the group as edited, unknown fields (copies…) kept.
  const draft = () => {
    const d = structuredClone(g);
    Object.assign(d, { name: name.value.trim(), selectors: lines(sels.value), rpo: rpo.value.trim() || undefined,
      consistency: cons.value || undefined, repository: repo.value.trim() || undefined,
      connections: conns.value.split(',').map((x) => x.trim()).filter(Boolean) });
    d.retention = {};
    for (const k of rules) if (Number(retIn[k].value) > 0) d.retention[k] = Number(retIn[k].value);
    if (retIn.within.value.trim()) d.retention.within = retIn.within.value.trim();
    d.schedules = [...schedRows.children].map((r) => r.read()).filter(Boolean);
    d.bandwidth = { limit: bwLimit.value.trim() || undefined, timezone: bwZone.value.trim() || undefined,
      windows: [...winRows.children].map((r) => r.read()) };
    d.restore = { storage: lines(rs.value), networks: lines(rn.value) };
    for (const k of Object.keys(d)) if (d[k] === undefined || (Array.isArray(d[k]) && !d[k].length)) delete d[k];
    return d;
  };

  const refreshPreview = debounce(async () => {
    const d = draft();
    if (!d.selectors || !d.selectors.length) { preview.replaceChildren(h('p', { class: 'muted' }, 'No selector: the group selects nothing.')); return; }
    try {
      const pv = await post('/groups/preview', { ...d, name: d.name || 'draft' });
      preview.replaceChildren(h('p', {}, h('strong', {}, String(pv.vms.length)), ' VMs match now: ', pv.vms.join(', ') || '—'),
        ...(pv.unmatched_selectors || []).map((u) => h('p', { class: 'bad' }, u)));
    } catch (e) { preview.replaceChildren(h('p', { class: 'bad' }, e.message)); }
  }, 400);
  const refreshSim = debounce(() => simulate(sim, draft()), 250);
  sels.addEventListener('input', refreshPreview);
  conns.addEventListener('input', refreshPreview);
  retBox.addEventListener('input', refreshSim);
  schedRows.addEventListener('input', refreshSim);

  const form = h('form', { id: 'g-form', onsubmit: (e) => e.preventDefault() }, h('fieldset', { disabled: ro },
    section('Selection', field('Name', name), field('Selectors, one per line', sels, 'name:GLOB, uuid:, ipaddr:, powerstate:on|off|paused, tag:GLOB, any:, or a name'),
      preview, h('div', { class: 'row' }, field('Repository', repo), field('Connections (comma separated)', conns))),
    section('Protection', h('div', { class: 'row' }, field('RPO', rpo, 'newest good point no older than this'), field('Consistency', cons))),
    section('Schedules', schedRows, h('button', { type: 'button', onclick: () => { addSched({ kind: 'backup', cron: '0 1 * * *' }); refreshSim(); } }, 'Add schedule')),
    section('Retention', retBox, sim),
    section('Bandwidth', h('div', { class: 'row' }, field('Limit outside the windows', bwLimit), field('Time zone of the windows', bwZone)),
      winRows, h('button', { type: 'button', onclick: () => addWin({ days: 'mon-fri', hours: '08:00-18:00', limit: '50MB/s' }) }, 'Add window')),
    section('Restore rights (restore-only users of the group)', h('div', { class: 'row' },
      field('Storage they may restore into, one per line', rs), field('Networks they may attach, one per line', rn)))));
  page.append(form);
  if (!ro) {
    page.append(h('p', { class: 'actions' },
      h('button', { id: 'g-save', class: 'primary', onclick: (e) => busy(e.target, async () => {
        const d = draft();
        if (!d.name) throw new Error('Give the group a name.');
        const saved = await put('/groups/' + enc(d.name), d);
        say('Group ' + saved.name + ' saved.');
        if (isNew) location.hash = '#/groups/' + enc(saved.name);
      }) }, 'Save'),
      isNew ? null : h('button', { class: 'danger', onclick: (e) => busy(e.target, async () => {
        if (!confirm('Remove group ' + g.name + '? Its points stay.')) return;
        await del('/groups/' + enc(g.name));
        say('Group ' + g.name + ' removed.');
        location.hash = '#/groups';
      }) }, 'Delete')));
  }
  refreshPreview();
  await simulate(sim, draft());
}

function schedRow(sc) {
  const kind = h('select', { 'aria-label': 'kind' }, ['backup', 'verify', 'prune', 'copy'].map((k) => h('option', { value: k, selected: sc.kind === k }, k)));
  const timing = h('input', { 'aria-label': 'cron or interval', value: sc.cron || (sc.every ? 'every ' + sc.every : ''), placeholder: '0 1 * * *, @daily or every 4h' });
  const tz = h('input', { 'aria-label': 'time zone', value: sc.timezone || '', placeholder: 'time zone', class: 'mid' });
  const win = h('input', { 'aria-label': 'start window', value: sc.window || '', placeholder: 'window', class: 'short' });
  const row = h('div', { class: 'row sched' }, kind, timing, tz, win,
    h('button', { type: 'button', class: 'link', onclick: () => { row.remove(); row.dispatchEvent(new Event('input', { bubbles: true })); } }, 'remove'));
  row.read = () => {
    const t = timing.value.trim();
    if (!t) return null;
    const out = { ...sc, kind: kind.value, timezone: tz.value.trim() || undefined, window: win.value.trim() || undefined };
    delete out.cron; delete out.every;
    if (t.startsWith('every ')) out.every = t.slice(6).trim(); else out.cron = t;
    return out;
  };
  return row;
}

function windowRow(w) {
  const days = h('input', { 'aria-label': 'days', value: w.days || '', placeholder: 'mon-fri' , class: 'mid' });
  const hours = h('input', { 'aria-label': 'hours', value: w.hours || '', placeholder: '08:00-18:00', class: 'mid' });
  const limit = h('input', { 'aria-label': 'limit', value: w.limit && w.limit !== '0' ? w.limit : '', placeholder: 'unlimited', class: 'mid' });
  const row = h('div', { class: 'row' }, days, hours, limit, h('button', { type: 'button', class: 'link', onclick: () => row.remove() }, 'remove'));
  row.read = () => ({ days: days.value.trim() || undefined, hours: hours.value.trim() || undefined, limit: limit.value.trim() || '0' });
  return row;
}

// seconds reads "90s", "4h", "1h30m", "7d", "2w".
function seconds(text) {
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  let total = 0;
  for (const m of String(text).matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) total += Number(m[1]) * unit[m[2]];
  return total;
}

// span is how far back a simulation must go to show every rule at work.
function span(r) {
  const days = Math.max(30, (r.last || 0) + 7, (r.daily || 0) + 7, (r.weekly || 0) * 7 + 14, (r.monthly || 0) * 31 + 31,
    (r.quarterly || 0) * 92 + 31, (r.yearly || 0) * 366 + 31, seconds(r.within || '') / 86400 + 7);
  return Math.min(days, 3700) + 'd';
}

async function simulate(box, d) {
  const r = d.retention || {};
  if (!Object.keys(r).length) { box.replaceChildren(h('p', { class: 'muted' }, 'No retention: every point is kept (prune does nothing).')); return; }
  const bk = (d.schedules || []).find((x) => x.kind === 'backup') || {};
  const schedule = { cron: bk.cron, timezone: bk.timezone, every: bk.every ? Math.round(seconds(bk.every) * 1e9) : undefined };
  try {
    const sim = await post('/policy/simulate', { retention: r, schedule, span: span(r) });
    box.replaceChildren(drawSim(sim, bk));
  } catch (e) { box.replaceChildren(h('p', { class: 'bad' }, e.message)); }
}

// drawSim draws hypothetical backups along time: a tick each, the kept
// ones as dots (their rules in the tooltip).
function drawSim(sim, bk) {
  const t0 = new Date(sim.from).getTime(), t1 = new Date(sim.to).getTime();
  const W = 1000, pad = 10;
  const x = (t) => (pad + (W - 2 * pad) * (new Date(t).getTime() - t0) / (t1 - t0)).toFixed(1);
  let ticks = '';
  for (const p of sim.points) if (!p.keep) ticks += `M${x(p.time)} 30v10`;
  const svg = s('svg', { viewBox: `0 0 ${W} 60`, class: 'timeline sim', role: 'img',
    'aria-label': 'Simulated points: ' + sim.kept + ' kept of ' + sim.points.length },
  s('line', { x1: pad, x2: W - pad, y1: 35, y2: 35, class: 'axis' }), s('path', { d: ticks, class: 'dropped' }));
  for (const p of sim.points) {
    if (!p.keep) continue;
    svg.append(s('circle', { cx: x(p.time), cy: 35, r: 5, class: 'kept' },
      s('title', {}, new Date(p.time).toLocaleDateString() + ': ' + (p.reasons || []).join(', '))));
  }
  const per = Object.entries(sim.per_rule || {}).map(([k, n]) => k + ' ' + n).join(', ');
  return h('div', {}, h('p', {}, 'With backups ', bk.cron || (bk.every ? 'every ' + bk.every : 'daily'), ', this retention keeps ',
    h('strong', { id: 'g-sim-kept' }, String(sim.kept)), ' points per VM (' + per + ')',
    sim.oldest_kept ? ', the oldest ' + dur((t1 - new Date(sim.oldest_kept).getTime()) / 1000) + ' old.' : '.'),
  h('div', { class: 'tl' }, svg, h('div', { class: 'tl-ends' }, h('span', {}, new Date(sim.from).toLocaleDateString()),
    h('span', {}, 'now'))));
}
