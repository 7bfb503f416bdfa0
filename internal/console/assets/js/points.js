// points.js: a VM's recovery points on a timeline and in a table, and one
// point's details (disks, notes) with what can be done with it.
import { get, enc, qs } from './api.js';
import { h, s, badge, bytes, when, table, section, isZero } from './ui.js';

export async function vmPoints({ page, args }) {
  const uuid = args[0];
  const points = (await get('/vms/' + enc(uuid) + '/points')) || [];
  const name = points.length ? points[points.length - 1].VMName : uuid;
  page.append(h('h1', {}, 'Points of ', name),
    h('p', {}, h('a', { class: 'button', href: '#/restore' + qs({ vm: uuid }) }, 'Restore…')));
  if (!points.length) { page.append(h('p', { class: 'muted' }, 'This VM has no recovery point yet.')); return; }
  page.append(section('Timeline', timeline(points),
    h('p', { class: 'legend' }, h('span', { class: 'dot full' }), ' full ', h('span', { class: 'dot incr' }), ' incremental ',
      h('span', { class: 'dot damaged' }), ' damaged ', h('span', { class: 'dot verified' }), ' verified')));
  const newestFirst = [...points].reverse();
  page.append(section('Recovery points', table([
    ['Point', (p) => h('a', { href: '#/points/' + enc(p.ID) }, when(p.Started))],
    ['Kind', (p) => p.Kind],
    ['Consistency', (p) => p.Consistency || '—'],
    ['State', (p) => p.Damaged ? badge('failed', 'damaged') : (isZero(p.Verified) ? 'not verified' : badge('ok', 'verified'))],
    ['Read', (p) => bytes(p.BytesRead)],
    ['New', (p) => bytes(p.BytesNew)],
    ['Stored', (p) => bytes(p.BytesStored)],
    ['', (p) => h('a', { href: '#/files/' + enc(p.ID) }, 'Files')],
  ], newestFirst, { caption: points.length + ' points, newest first' })));
}

// timeline draws the points along time: full ones larger, damaged red,
// verified ringed; each is a link to the point.
function timeline(points) {
  const t0 = new Date(points[0].Started).getTime();
  const t1 = new Date(points[points.length - 1].Started).getTime();
  const span = Math.max(t1 - t0, 1);
  const W = 1000, pad = 12;
  const x = (p) => pad + (W - 2 * pad) * (new Date(p.Started).getTime() - t0) / span;
  const svg = s('svg', { viewBox: `0 0 ${W} 56`, class: 'timeline', role: 'group', 'aria-label': 'Points over time' },
    s('line', { x1: pad, x2: W - pad, y1: 28, y2: 28, class: 'axis' }));
  for (const p of points) {
    const cls = (p.Kind === 'full' ? 'full' : 'incr') + (p.Damaged ? ' damaged' : '') + (isZero(p.Verified) ? '' : ' verified');
    svg.append(s('a', { href: '#/points/' + enc(p.ID), 'aria-label': p.Kind + ' point ' + new Date(p.Started).toLocaleString() },
      s('circle', { cx: x(p).toFixed(1), cy: 28, r: p.Kind === 'full' ? 7 : 4.5, class: 'pt ' + cls },
        s('title', {}, new Date(p.Started).toLocaleString() + ' · ' + p.Kind + ' · ' + bytes(p.BytesStored) + ' stored'))));
  }
  return h('div', { class: 'tl' }, svg,
    h('div', { class: 'tl-ends' }, h('span', {}, when(points[0].Started)), h('span', {}, when(points[points.length - 1].Started))));
}

export async function pointDetail({ page, args }) {
  const p = await get('/points/' + enc(args[0]));
  page.append(h('h1', {}, p.VMName, ' · ', when(p.Started)),
    h('p', { class: 'actions' },
      h('a', { class: 'button', href: '#/files/' + enc(p.ID) }, 'Browse files'),
      h('a', { class: 'button', href: '#/restore' + qs({ vm: p.VMUUID, point: p.ID }) }, 'Restore…'),
      h('a', { href: '#/vms/' + enc(p.VMUUID) }, 'All points of ' + p.VMName)),
    section('Point', h('dl', { class: 'facts' },
      fact('Id', h('code', {}, p.ID)), fact('Kind', p.Kind), fact('Based on', p.Parent || '—'),
      fact('Consistency', p.Consistency || '—'), fact('Started', when(p.Started)), fact('Finished', when(p.Finished)),
      fact('Read / new / stored', bytes(p.BytesRead) + ' / ' + bytes(p.BytesNew) + ' / ' + bytes(p.BytesStored)),
      fact('Verified', isZero(p.Verified) ? 'never' : when(p.Verified)),
      fact('Damaged', p.Damaged ? badge('failed', 'yes: a verify found objects of it missing or corrupt') : 'no'),
      fact('Tags', (p.Tags || []).join(', ') || '—'), fact('Copies in', (p.Copies || []).join(', ') || '—'))),
    section('Disks', table([
      ['Disk', (d) => d.Target], ['Size', (d) => bytes(d.Size)], ['Format', (d) => d.Format || '—'],
      ['Source', (d) => d.Source || '—'], ['Read', (d) => bytes(d.BytesRead)], ['Stored', (d) => bytes(d.BytesStored)],
      ['Changes only', (d) => d.Incremental ? 'yes' : 'no'],
      ['', (d) => h('a', { href: '#/files/' + enc(p.ID) + qs({ disk: d.Target }) }, 'Files')],
    ], p.Disks || [], { empty: 'No disks.' })),
    section('Notes', (p.Notes || []).length ? h('ul', {}, p.Notes.map((n) => h('li', {}, n))) : h('p', { class: 'muted' }, 'No notes.')));
}

const fact = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
