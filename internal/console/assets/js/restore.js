// restore.js: the restore wizard: VM → point → kind (in place, as a new
// VM, export as files, single files) → options; a preview shows what
// would change and every conflict before anything is changed, then the
// restore runs as a job whose progress and result are shown.
import { get, post, enc } from './api.js';
import { h, badge, bytes, section, field, say, busy, table } from './ui.js';
import { liveProgress } from './progress.js';

const kinds = [
  ['new', 'As a new VM', 'beside the original: new name, UUID and MACs, disks in the storage you choose'],
  ['inplace', 'In place', 'the original VM gets the point back (recreated if it was deleted)'],
  ['export', 'Export as image files', 'disk images and the configuration, written to a folder of the server'],
  ['files', 'Single files', 'browse the point and download files or folders'],
];

export async function restore({ page, params, onLeave }) {
  const [vms, groups, conns] = await Promise.all([get('/vms'), get('/groups'), get('/connections')]);
  const withPoints = vms.filter((v) => v.points > 0).sort((a, b) => a.name.localeCompare(b.name));
  const storages = [...new Set(groups.flatMap((g) => (g.restore && g.restore.storage) || []))];
  const nets = [...new Set(groups.flatMap((g) => (g.restore && g.restore.networks) || []))];
  const st = { vm: params.get('vm') || '', point: params.get('point') || '', kind: params.get('kind') || 'new' };
  page.append(h('h1', {}, 'Restore'));
  if (!withPoints.length) { page.append(h('p', { class: 'muted' }, 'No VM you may restore has a recovery point yet.')); return; }
  if (!withPoints.some((v) => v.uuid === st.vm)) st.vm = withPoints[0].uuid;
  page.append(h('datalist', { id: 'storages' }, storages.map((x) => h('option', { value: x }))),
    h('datalist', { id: 'networks' }, nets.map((x) => h('option', { value: x }))));

  const vmSel = h('select', { id: 'r-vm', onchange: () => { st.vm = vmSel.value; st.point = ''; drawPoints(); } },
    withPoints.map((v) => h('option', { value: v.uuid, selected: v.uuid === st.vm }, v.name + ' (' + v.points + ' points)')));
  const pointSel = h('select', { id: 'r-point', onchange: () => { st.point = pointSel.value; reset(); } });
  const kindBox = h('fieldset', { class: 'kinds' }, h('legend', {}, '3. What to restore'),
    kinds.map(([k, label, hint]) => h('label', { class: 'radio' },
      h('input', { type: 'radio', name: 'kind', value: k, checked: k === st.kind, onchange: () => { st.kind = k; drawOptions(); } }),
      h('span', {}, h('strong', {}, label), h('small', { class: 'muted' }, ' — ' + hint)))));
  const options = h('div');
  const outcome = h('div', { 'aria-live': 'polite' });
  page.append(section('1. VM', field('VM', vmSel)), section('2. Recovery point', field('Point', pointSel)),
    h('section', { class: 'card' }, kindBox), section('4. Options', options), outcome);

  let previewed = null;
  const reset = () => { previewed = null; outcome.replaceChildren(); };

  async function drawPoints() {
    const ps = ((await get('/vms/' + enc(st.vm) + '/points')) || []).reverse();
    if (!ps.some((p) => p.ID === st.point)) st.point = ps.length ? ps[0].ID : '';
    pointSel.replaceChildren(...ps.map((p) => h('option', { value: p.ID, selected: p.ID === st.point },
      new Date(p.Started).toLocaleString() + ' · ' + p.Kind + ' · ' + (p.Consistency || '?') + (p.Damaged ? ' · DAMAGED' : ''))));
    drawOptions();
  }

  const inputs = {};
  function drawOptions() {
    reset();
    const vm = withPoints.find((v) => v.uuid === st.vm);
    const I = (k, el) => (inputs[k] = el);
    const conflict = h('select', { onchange: reset }, ['abort', 'keep', 'overwrite'].map((x) => h('option', { value: x }, x)));
    I('on_conflict', conflict);
    const els = [];
    if (st.kind === 'new') {
      els.push(field('New VM name', I('name', h('input', { id: 'r-name', required: true, value: vm.name + '-restored', oninput: reset }))),
        field('Storage for its disks', I('storage', h('input', { id: 'r-storage', list: 'storages', value: storages[0] || '', oninput: reset,
          placeholder: '/var/lib/libvirt/images or pool:NAME' }))),
        field('Hypervisor connection', I('connection', h('select', { onchange: reset }, h('option', { value: '' }, 'the group\'s'),
          conns.map((c) => h('option', { value: c.name }, c.name))))),
        field('Disk format', I('format', h('select', { onchange: reset }, ['', 'qcow2', 'raw'].map((x) => h('option', { value: x }, x || 'as saved'))))),
        I('netbox', h('div', { class: 'nets' })));
    }
    if (st.kind === 'new' || st.kind === 'inplace') {
      els.push(field('When something already exists', conflict, 'abort changes nothing; keep leaves what exists; overwrite replaces it'),
        h('label', { class: 'check' }, I('start', h('input', { id: 'r-start', type: 'checkbox', onchange: reset })), ' Start the VM afterwards'),
        h('p', { class: 'actions' }, h('button', { id: 'r-preview', onclick: (e) => busy(e.target, doPreview) }, 'Check what would change'),
          I('go', h('button', { id: 'r-go', class: 'primary', disabled: true, onclick: (e) => busy(e.target, doRestore) }, 'Restore'))));
    } else if (st.kind === 'export') {
      els.push(field('Folder on the server', I('out', h('input', { id: 'r-out', list: 'storages', placeholder: '/srv/export' }))),
        field('Image format', I('eformat', h('select', {}, ['', 'qcow2', 'raw', 'vmdk'].map((x) => h('option', { value: x }, x || 'as saved'))))),
        h('p', { class: 'actions' }, h('button', { id: 'r-export', class: 'primary', onclick: (e) => busy(e.target, doExport) }, 'Export')));
    } else {
      els.push(h('p', {}, h('a', { class: 'button primary', href: '#/files/' + enc(st.point) }, 'Browse the files of this point')));
    }
    options.replaceChildren(...els);
  }

  function request() {
    const r = { on_conflict: inputs.on_conflict.value, start: inputs.start.checked };
    if (st.kind === 'new') {
      Object.assign(r, { name: inputs.name.value.trim(), storage: inputs.storage.value.trim(), connection: inputs.connection.value,
        format: inputs.format.value });
      const map = {};
      for (const inp of inputs.netbox.querySelectorAll('input')) if (inp.value.trim()) map[inp.dataset.from] = inp.value.trim();
      if (Object.keys(map).length) r.networks = map;
      if (!r.name) throw new Error('Give the new VM a name.');
    }
    return r;
  }

  async function doPreview() {
    const req = request();
    const pv = await post('/points/' + enc(st.point) + '/restore/preview', req);
    if (st.kind === 'new' && !inputs.netbox.children.length && pv.networks && pv.networks.length) {
      inputs.netbox.append(h('fieldset', {}, h('legend', {}, 'Networks'), pv.networks.map((n) =>
        field(n + ' →', h('input', { list: 'networks', 'data-from': n, placeholder: 'keep ' + n, oninput: reset })))));
    }
    pv.conflicts = pv.conflicts || [];
    const blocking = pv.conflicts.length > 0 && req.on_conflict === 'abort';
    outcome.replaceChildren(section('What would change',
      h('dl', { class: 'facts' }, h('dt', {}, 'VM'), h('dd', {}, pv.vm + (pv.in_place ? ' (in place)' : ' (new)')),
        h('dt', {}, 'Disks'), h('dd', {}, (pv.disks || []).join(', ') || '—'),
        h('dt', {}, 'Networks'), h('dd', {}, (pv.networks || []).join(', ') || '—')),
      pv.conflicts.length ? table([['Conflict', (c) => c.kind], ['What', (c) => c.name + (c.target ? ' (' + c.target + ')' : '')],
        ['', (c) => c.running ? badge('late', 'running') : '']], pv.conflicts, { caption: pv.conflicts.length + ' conflicts', class: 'conflicts' })
        : h('p', { class: 'good' }, 'No conflict: nothing existing is touched.'),
      blocking ? h('p', { class: 'bad' }, 'With “abort” this restore would stop at these conflicts: choose keep or overwrite, or another name.') : null));
    previewed = JSON.stringify(req);
    inputs.go.disabled = blocking;
  }

  async function doRestore() {
    const req = request();
    if (previewed !== JSON.stringify(req)) { await doPreview(); if (inputs.go.disabled) return; }
    const j = await post('/points/' + enc(st.point) + '/restore', req);
    previewed = null; // another restore needs another look first
    runJob(j, 'Restore');
  }

  async function doExport() {
    const j = await post('/points/' + enc(st.point) + '/export', { out: inputs.out.value.trim(), format: inputs.eformat.value });
    runJob(j, 'Export');
  }

  function runJob(j, what) {
    const result = h('div', { id: 'r-result' });
    const lp = liveProgress(j.id, async () => {
      const done = await get('/jobs/' + enc(j.id));
      result.replaceChildren(h('div', {}, h('p', {}, what + ' ', badge(done.state), done.error ? ' ' + done.error : ''), summary(done)));
      say(what + ' ' + done.state + '.', done.state === 'Completed' ? 'ok' : 'error');
    });
    onLeave(lp.stop);
    outcome.append(section(what + ' job', h('p', {}, h('a', { href: '#/jobs/' + enc(j.id) }, 'Job ' + j.id)), lp.el, result));
  }

  await drawPoints();
}

// summary shows a restore or export report: the VM and each disk written.
function summary(j) {
  const s = j.summary;
  if (!s || !s.disks) return null;
  return h('div', {},
    s.vm ? h('p', {}, 'VM ', h('strong', { id: 'r-vm-name' }, s.vm), s.started ? ', started' : '', s.seconds ? ' in ' + s.seconds.toFixed(1) + ' s' : '') : null,
    table([['Disk', (d) => d.target], ['Written to', (d) => d.path], ['Size', (d) => bytes(d.size)],
      ['Data written', (d) => bytes(d.data_bytes)]], s.disks, {}),
    (s.notes || []).length ? h('ul', {}, s.notes.map((n) => h('li', {}, n))) : null);
}
