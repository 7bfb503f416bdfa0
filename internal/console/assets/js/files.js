// files.js: a point's guest filesystems: browse (a page of a directory at
// a time, so directories of any size stay light), filter, search by name,
// download files, folders as zip or tar, and preview text files.
import { get, enc, qs } from './api.js';
import { h, bytes, when, table, section, say } from './ui.js';

const pageSize = 200;
const volumeCache = new Map();

export async function files({ page, args, params }) {
  const id = args[0];
  const disk = params.get('disk') || '';
  const volume = params.get('volume') || '';
  const path = params.get('path') || '/';
  const offset = Number(params.get('offset') || 0);
  const name = params.get('name') || '';
  const search = params.get('search') || '';
  const point = await get('/points/' + enc(id));
  point.Disks = point.Disks || [];
  const d = disk || (point.Disks[0] || {}).Target || '';
  const key = id + '/' + d;
  if (!volumeCache.has(key)) volumeCache.set(key, get('/points/' + enc(id) + '/volumes' + qs({ disk: d })).catch(() => []));
  const vols = await volumeCache.get(key);
  const here = { disk: d, volume, path };
  const to = (over) => '#/files/' + enc(id) + qs({ ...here, ...over });
  const go = (over) => { location.hash = to(over); };

  page.append(h('h1', {}, 'Files of ', point.VMName, ' · ', when(point.Started)));
  const diskSel = h('select', { onchange: (e) => go({ disk: e.target.value, volume: '', path: '/' }) },
    point.Disks.map((x) => h('option', { value: x.Target, selected: x.Target === d }, x.Target + ' (' + bytes(x.Size) + ')')));
  const volSel = h('select', { onchange: (e) => go({ volume: e.target.value, path: '/' }) },
    h('option', { value: '' }, 'first readable'),
    vols.map((v) => h('option', { value: String(v.index), selected: String(v.index) === volume, disabled: !v.fs },
      (v.index ? 'partition ' + v.index : 'whole disk') + ' · ' + (v.fs || 'unknown') + ' · ' + bytes(v.size) + (v.label ? ' · ' + v.label : ''))));
  page.append(h('div', { class: 'row' },
    h('label', { class: 'field' }, h('span', {}, 'Disk'), diskSel),
    h('label', { class: 'field' }, h('span', {}, 'Filesystem'), volSel)));

  const filterIn = h('input', { type: 'search', value: name, placeholder: 'part of a name', 'aria-label': 'Filter this folder' });
  const searchIn = h('input', { type: 'search', value: search, placeholder: 'name or *.conf', 'aria-label': 'Search below this folder' });
  page.append(h('div', { class: 'row' },
    h('form', { class: 'inline-form', onsubmit: (e) => { e.preventDefault(); go({ name: filterIn.value, offset: '' }); } },
      h('label', { class: 'field' }, h('span', {}, 'Filter this folder'), filterIn), h('button', {}, 'Filter')),
    h('form', { class: 'inline-form', onsubmit: (e) => { e.preventDefault(); go({ search: searchIn.value }); } },
      h('label', { class: 'field' }, h('span', {}, 'Search below it'), searchIn), h('button', {}, 'Search'))));

  page.append(crumbs(path, (p) => to({ path: p })));
  const base = '/api/v1/points/' + enc(id) + '/files';
  const fileURL = (p) => base + '/content' + qs({ disk: d, volume, path: p });
  page.append(h('p', { class: 'actions' }, 'Download this folder: ',
    h('a', { class: 'button', href: base + '/archive' + qs({ disk: d, volume, path, format: 'zip' }), download: '' }, 'zip'),
    h('a', { class: 'button', href: base + '/archive' + qs({ disk: d, volume, path, format: 'tar' }), download: '' }, 'tar')));

  const preview = h('div', { class: 'preview' });
  const cols = [
    ['Name', (e) => e.type === 'dir' ? h('a', { href: to({ path: e.path, search: '' }) }, e.name + '/') :
      e.type === 'symlink' ? e.name + ' → ' + e.target : e.name],
    ['Size', (e) => e.type === 'file' ? bytes(e.size) : ''],
    ['Modified', (e) => when(e.mtime)],
    ['Mode', (e) => modeString(e.mode)],
    ['', (e) => e.type !== 'file' ? '' : h('span', { class: 'actions' },
      h('a', { href: fileURL(e.path), download: e.name }, 'Download'),
      e.size <= 1 << 20 ? h('button', { class: 'link', onclick: () => show(preview, e, fileURL(e.path)) }, 'Preview') : null)],
  ];
  if (search) {
    const found = await get('/points/' + enc(id) + '/files/search' + qs({ disk: d, volume, path, name: search }))
      .catch((e) => { say(e.message, 'error'); return { items: [] }; });
    page.append(section('Found below ' + path, table([['Path', (e) => e.type === 'dir' ?
      h('a', { href: to({ path: e.path, search: '' }) }, e.path + '/') : e.path], ...cols.slice(1)], found.items,
    { empty: 'Nothing matches “' + search + '”.', caption: found.items.length + (found.truncated ? '+' : '') + ' found' })), preview);
    return;
  }
  const list = await get('/points/' + enc(id) + '/files' + qs({ disk: d, volume, path, name, offset, limit: pageSize }));
  const last = Math.min(list.total, offset + list.items.length);
  const pager = h('p', { class: 'pager' },
    offset > 0 ? h('a', { href: to({ name, offset: Math.max(0, offset - pageSize) }) }, '← previous') : null,
    h('span', {}, list.total ? ` entries ${offset + 1}–${last} of ${list.total} ` : ' empty '),
    last < list.total ? h('a', { href: to({ name, offset: offset + pageSize }) }, 'next →') : null);
  page.append(h('p', { class: 'muted' }, list.fs + ' filesystem on ' + list.disk + (list.volume ? ', partition ' + list.volume : '')),
    pager, table(cols, list.items, { caption: path, class: 'files', empty: name ? 'Nothing here matches “' + name + '”.' : 'This folder is empty.' }),
    pager.cloneNode(true), preview);
}

function crumbs(path, href) {
  const parts = path.split('/').filter(Boolean);
  const items = [h('li', {}, h('a', { href: href('/') }, '/'))];
  parts.forEach((p, i) => items.push(h('li', {}, h('a', { href: href('/' + parts.slice(0, i + 1).join('/')) }, p))));
  return h('nav', { class: 'crumbs', 'aria-label': 'Folder' }, h('ol', {}, items));
}

// show previews a small file as text (or says it is binary).
async function show(box, e, url) {
  const resp = await fetch(url, { credentials: 'same-origin' });
  if (!resp.ok) { say('Preview of ' + e.path + ': ' + resp.statusText, 'error'); return; }
  const buf = new Uint8Array(await resp.arrayBuffer());
  const text = buf.includes(0) ? null : new TextDecoder('utf-8', { fatal: false }).decode(buf);
  box.replaceChildren(section('Preview of ' + e.path,
    text === null ? h('p', { class: 'muted' }, 'A binary file: download it instead.') : h('pre', { tabindex: '0' }, text)));
  box.scrollIntoView({ block: 'nearest' });
}

function modeString(m) {
  const perm = m & 0o777;
  let out = '';
  for (let i = 8; i >= 0; i--) out += (perm & (1 << i)) ? 'rwx'[(8 - i) % 3] : '-';
  return out;
}
