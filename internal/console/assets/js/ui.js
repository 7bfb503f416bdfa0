// ui.js: small DOM and formatting helpers shared by the pages.

// h makes an element: h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child…).
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  add(el, kids);
  return el;
}

const svgNS = 'http://www.w3.org/2000/svg';

// s makes an SVG element.
export function s(tag, attrs, ...kids) {
  const el = document.createElementNS(svgNS, tag);
  setAttrs(el, attrs);
  add(el, kids);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : v);
  }
}

export function add(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    el.append(k instanceof Node ? k : String(k));
  }
  return el;
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function bytes(n) {
  if (n === undefined || n === null) return '—';
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : 1)) + ' ' + units[i];
}

// dur formats seconds as "3d 4h", "2h 5m", "40s".
export function dur(sec) {
  if (sec === undefined || sec === null || !isFinite(sec)) return '—';
  sec = Math.max(0, Math.round(sec));
  const d = Math.floor(sec / 86400), hh = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60);
  if (d) return d + 'd ' + hh + 'h';
  if (hh) return hh + 'h ' + m + 'm';
  if (m) return m + 'm ' + (sec % 60) + 's';
  return sec + 's';
}

export const isZero = (iso) => !iso || iso.startsWith('0001-');

// when shows a time in the browser's time zone.
export function when(iso) {
  if (isZero(iso)) return '—';
  const d = new Date(iso);
  return h('time', { datetime: iso, title: d.toString() }, d.toLocaleString());
}

export function ago(iso) {
  if (isZero(iso)) return '—';
  return dur((Date.now() - new Date(iso).getTime()) / 1000) + ' ago';
}

export const zone = () => Intl.DateTimeFormat().resolvedOptions().timeZone;

export function badge(state, text) {
  return h('span', { class: 'badge b-' + String(state).toLowerCase() }, text ?? state);
}

// table builds a scrollable table; cols are [title, row => cell content].
export function table(cols, rows, opts = {}) {
  const body = h('tbody');
  const frag = document.createDocumentFragment();
  for (const r of rows) {
    const tr = document.createElement('tr');
    for (const [, cell] of cols) {
      const td = document.createElement('td');
      add(td, [cell(r)]);
      tr.append(td);
    }
    frag.append(tr);
  }
  body.append(frag);
  const t = h('table', { class: opts.class || '' },
    opts.caption ? h('caption', {}, opts.caption) : null,
    h('thead', {}, h('tr', {}, cols.map(([title]) => h('th', { scope: 'col' }, title)))), body);
  if (!rows.length && opts.empty) return h('p', { class: 'muted' }, opts.empty);
  return h('div', { class: 'scroll', tabindex: '0', role: 'region', 'aria-label': opts.caption || 'table' }, t);
}

// say shows a message to everyone, screen readers included.
export function say(text, kind = 'ok') {
  const box = document.getElementById('messages');
  const m = h('div', { class: 'msg msg-' + kind }, text,
    h('button', { class: 'link', 'aria-label': 'Dismiss', onclick: () => m.remove() }, '×'));
  box.append(m);
  if (kind === 'ok') setTimeout(() => m.remove(), 6000);
}

export function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

// field labels an input.
export function field(label, input, hint) {
  return h('label', { class: 'field' }, h('span', {}, label), input, hint ? h('small', { class: 'muted' }, hint) : null);
}

export function section(title, ...kids) {
  return h('section', { class: 'card' }, h('h2', {}, title), kids);
}

// busy disables a button while an action runs and reports its error.
export async function busy(btn, fn) {
  btn.disabled = true;
  try { return await fn(); } catch (e) { say(e.message, 'error'); return undefined; } finally { btn.disabled = false; }
}

export const lines = (text) => text.split('\n').map((x) => x.trim()).filter(Boolean);
