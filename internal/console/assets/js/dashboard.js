// dashboard.js: protection at a glance: every VM's state against its
// group's RPO, running jobs live, last failures, repositories and their
// forecast, verify problems, unprotected VMs and unprotectable disks.
import { get, qs, enc } from './api.js';
import { h, badge, bytes, dur, when, ago, table, section, isZero } from './ui.js';
import { liveProgress } from './progress.js';

const order = { failed: 0, late: 1, never: 2, missing: 3, unprotected: 4, ok: 5 };

export async function dashboard({ page, params, session, onLeave }) {
  const all = session.can('all');
  // The capacity estimate may take a while to compute: it fills its
  // section when it comes, the rest does not wait for it.
  const caps = all ? get('/capacity') : null;
  const [vms, running, failed, partial, damage] = await Promise.all([
    get('/vms'),
    get('/jobs?state=Running&limit=20'),
    get('/jobs?state=Failed&limit=5'),
    get('/jobs?state=PartiallyFailed&limit=5'),
    all ? get('/damage').catch(() => []) : [],
  ]);
  vms.sort((a, b) => (order[a.status] - order[b.status]) || a.name.localeCompare(b.name));
  const count = {};
  for (const v of vms) count[v.status] = (count[v.status] || 0) + 1;
  const filter = params.get('status') || '';

  page.append(h('h1', {}, 'Dashboard'),
    h('ul', { class: 'tiles', 'aria-label': 'VMs by state' }, Object.keys(order).map((st) =>
      h('li', {}, h('a', { href: '#/' + qs({ status: filter === st ? '' : st }), class: 'tile t-' + st, 'aria-current': filter === st ? 'true' : null },
        h('strong', {}, String(count[st] || 0)), ' ', st)))));

  page.append(groupSummary(vms, all));

  const jobsBox = section('Running jobs');
  running.jobs = running.jobs || [];
  if (!running.jobs.length) jobsBox.append(h('p', { class: 'muted' }, 'No job is running.'));
  for (const j of running.jobs) {
    const lp = liveProgress(j.id);
    onLeave(lp.stop);
    jobsBox.append(h('div', { class: 'job-live' },
      h('p', {}, h('a', { href: '#/jobs/' + enc(j.id) }, j.kind + ' of ' + (j.group || '—')), ' started ', when(j.started)), lp.el));
  }
  page.append(jobsBox);

  const fails = [...(failed.jobs || []), ...(partial.jobs || [])].sort((a, b) => b.finished.localeCompare(a.finished)).slice(0, 5);
  page.append(section('Last failures', table([
    ['Job', (j) => h('a', { href: '#/jobs/' + enc(j.id) }, j.kind + ' of ' + (j.group || '—'))],
    ['Ended', (j) => when(j.finished)],
    ['State', (j) => badge(j.state)],
    ['Cause', (j) => cause(j)],
  ], fails, { empty: 'No failed job recently.' })));

  if (all) page.append(repositories(caps), problems(damage, vms));

  const shown = filter ? vms.filter((v) => v.status === filter) : vms;
  const search = h('input', { type: 'search', placeholder: 'Filter by name or group', 'aria-label': 'Filter VMs' });
  const vmTable = h('div');
  const draw = () => {
    const q = search.value.toLowerCase();
    const rows = q ? shown.filter((v) => v.name.toLowerCase().includes(q) || v.groups.some((g) => g.includes(q))) : shown;
    vmTable.replaceChildren(vmRows(rows));
  };
  search.addEventListener('input', draw);
  draw();
  page.append(section('Virtual machines' + (filter ? ' (' + filter + ')' : ''), search, vmTable));

  const unprot = vms.filter((v) => v.status === 'unprotected');
  const disks = vms.filter((v) => v.unprotectable_disks && v.unprotectable_disks.length);
  page.append(section('Not protected',
    h('h3', {}, 'VMs no group selects'),
    unprot.length ? h('ul', { class: 'inline' }, unprot.map((v) => h('li', {}, v.name))) : h('p', { class: 'muted' }, 'Every VM is in a group.'),
    h('h3', {}, 'Disks that cannot be backed up'),
    table([['VM', (v) => v.name], ['Disks', (v) => v.unprotectable_disks.join('; ')]], disks, { empty: 'None.' })));
}

// groupSummary counts each group's VMs by state.
function groupSummary(vms, linked) {
  const by = new Map();
  for (const v of vms) {
    for (const g of v.groups) {
      if (!by.has(g)) by.set(g, { name: g, vms: 0, rpo: v.rpo_seconds });
      const x = by.get(g);
      x.vms++;
      x[v.status] = (x[v.status] || 0) + 1;
    }
  }
  const rows = [...by.values()].sort((a, b) => a.name.localeCompare(b.name));
  const n = (k) => (x) => x[k] ? h('span', { class: 'b-' + k }, String(x[k])) : '0';
  return section('Groups', table([
    ['Group', (x) => linked ? h('a', { href: '#/groups/' + enc(x.name) }, x.name) : x.name],
    ['VMs', (x) => String(x.vms)], ['ok', n('ok')], ['late', n('late')], ['failed', n('failed')], ['never', n('never')],
  ], rows, { class: 'groups', empty: 'No VM is in a group.' }));
}

function cause(j) {
  if (j.error) return j.error;
  const bad = (j.vms || []).filter((v) => v.error);
  return bad.length ? bad.map((v) => v.vm_name + ': ' + v.error).join('; ') : '—';
}

function vmRows(rows) {
  return table([
    ['VM', (v) => h('a', { href: '#/vms/' + enc(v.uuid) }, v.name)],
    ['State', (v) => badge(v.status)],
    ['Groups', (v) => v.groups.join(', ') || '—'],
    ['Newest good point', (v) => isZero(v.newest_good_time) ? '—' :
      h('a', { href: '#/points/' + enc(v.newest_good_point) }, ago(v.newest_good_time))],
    ['RPO', (v) => v.rpo_seconds ? dur(v.rpo_seconds) : '—'],
    ['Points', (v) => String(v.points) + (v.damaged ? ' (' + v.damaged + ' damaged)' : '')],
    ['Stored', (v) => bytes(v.bytes_stored)],
    ['Last backup', (v) => v.last_error ? h('span', { class: 'bad' }, v.last_error) : (v.last_result || '—')],
  ], rows, { caption: rows.length + ' VMs', class: 'vms', empty: 'No VM to show.' });
}

function repositories(pending) {
  const box = section('Repositories', h('p', { class: 'muted' }, 'Estimating…'));
  pending.then((caps) => box.lastChild.replaceWith(repoTable(caps)),
    (e) => box.lastChild.replaceWith(h('p', { class: 'bad' }, e.message)));
  return box;
}

function repoTable(caps) {
  return table([
    ['Repository', (r) => r.repository],
    ['Used', (r) => r.size_bytes ? usage(r.used_bytes, r.size_bytes) : '—'],
    ['Growth', (r) => bytes(r.growth_bytes_per_day) + '/day'],
    ['In a year', (r) => bytes(r.expected_bytes_in_1y)],
    ['Full on', (r) => r.full_on ? when(r.full_on) : 'not within a year'],
  ], caps, { empty: 'No repository.', class: 'repos' });
}

function usage(used, size) {
  const pct = 100 * used / size;
  return h('span', { class: 'usage' }, h('meter', { min: '0', max: '100', low: '75', high: '90', optimum: '10', value: pct.toFixed(1) }),
    ' ' + bytes(used) + ' of ' + bytes(size) + ' (' + pct.toFixed(0) + '%)');
}

function problems(damage, vms) {
  const hurt = vms.filter((v) => v.damaged > 0);
  return section('Verify problems',
    table([
      ['Object', (d) => d.object], ['Kind', (d) => badge('failed', d.kind)], ['Repository', (d) => d.repository],
      ['Found', (d) => when(d.found)], ['Points affected', (d) => String((d.points || []).length)],
    ], damage, { empty: 'The last verify found nothing damaged.' }),
    hurt.length ? h('p', {}, 'VMs with damaged points: ', hurt.map((v) => v.name + ' (' + v.damaged + ')').join(', ')) : null);
}
