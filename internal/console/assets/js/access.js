// access.js: sign in, users and roles, API tokens (the secret shown once)
// and the audit log.
import { get, post, put, del, enc, qs } from './api.js';
import { h, when, table, section, field, say, busy } from './ui.js';
import { signedIn } from './session.js';

export async function login({ page, params }) {
  const user = h('input', { id: 'l-user', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'l-pass', type: 'password', autocomplete: 'current-password', required: true });
  const err = h('p', { class: 'bad', 'aria-live': 'assertive' });
  const btn = h('button', { id: 'l-go', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'login card', onsubmit: (e) => {
    e.preventDefault();
    busy(btn, async () => {
      try {
        signedIn(await post('/login', { user: user.value, password: pass.value }));
        location.hash = '#' + (params.get('next') || '/');
      } catch (x) { err.textContent = x.message; pass.select(); }
    });
  } }, h('h1', {}, 'Sign in to kura'), field('User', user), field('Password', pass), err, btn);
  page.append(form);
  user.focus();
}

const roles = ['admin', 'operator', 'auditor', 'restore'];

export async function users({ page, session }) {
  const [list, groups] = await Promise.all([get('/users'), get('/groups')]);
  const name = h('input', { id: 'u-name', required: true });
  const role = h('select', { id: 'u-role' }, roles.map((r) => h('option', { value: r }, r)));
  const gs = h('select', { id: 'u-groups', multiple: true, size: String(Math.min(6, Math.max(2, groups.length))) },
    groups.map((g) => h('option', { value: g.name }, g.name)));
  const pw = h('input', { id: 'u-pass', type: 'password', autocomplete: 'new-password' });
  const edit = (u) => {
    name.value = u.name; role.value = u.role;
    for (const o of gs.options) o.selected = (u.groups || []).includes(o.value);
    name.focus();
  };
  page.append(h('h1', {}, 'Users'), section('Users', table([
    ['User', (u) => u.name], ['Role', (u) => u.role], ['Groups', (u) => (u.groups || []).join(', ') || '—'], ['Tokens', (u) => String(u.tokens)],
    ['', (u) => h('span', { class: 'actions' }, h('button', { class: 'link', onclick: () => edit(u) }, 'Edit'),
      u.name === session.user ? null : h('button', { class: 'link danger', onclick: (e) => busy(e.target, async () => {
        if (!confirm('Remove user ' + u.name + ' and its tokens?')) return;
        await del('/users/' + enc(u.name));
        say('User ' + u.name + ' removed.');
        window.dispatchEvent(new HashChangeEvent('hashchange'));
      }) }, 'Remove'))],
  ], list)),
  section('Add or change a user', h('form', { onsubmit: (e) => {
    e.preventDefault();
    busy(e.submitter, async () => {
      const body = { role: role.value, groups: [...gs.selectedOptions].map((o) => o.value), password: pw.value || undefined };
      await put('/users/' + enc(name.value.trim()), body);
      say('User ' + name.value + ' saved.');
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    });
  } }, h('div', { class: 'row' }, field('Name', name), field('Role', role), field('Groups (restore users)', gs),
    field('Password', pw, 'empty keeps the current one')), h('button', { class: 'primary' }, 'Save user'))));
}

export async function tokens({ page, session }) {
  const list = await get('/tokens');
  const name = h('input', { id: 't-name', required: true, placeholder: 'prometheus' });
  const role = h('select', { id: 't-role' }, h('option', { value: '' }, 'mine (' + session.role + ')'),
    roles.slice(roles.indexOf(session.role) + 1).filter((r) => r !== 'restore').map((r) => h('option', { value: r }, r)));
  const expires = h('input', { id: 't-expires', type: 'date' });
  const shown = h('div', { 'aria-live': 'polite' });
  page.append(h('h1', {}, 'API tokens'), shown, section('Tokens', table([
    ['Name', (t) => t.name], ['Id', (t) => h('code', {}, t.id)], ['User', (t) => t.user], ['Role', (t) => t.role],
    ['Made', (t) => when(t.created)], ['Expires', (t) => when(t.expires)],
    ['', (t) => h('button', { class: 'link danger', onclick: (e) => busy(e.target, async () => {
      if (!confirm('Revoke token ' + t.name + '?')) return;
      await del('/tokens/' + enc(t.id));
      say('Token ' + t.name + ' revoked.');
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    }) }, 'Revoke')],
  ], list, { empty: 'No token.' })),
  section('Make a token', h('form', { onsubmit: (e) => {
    e.preventDefault();
    busy(e.submitter, async () => {
      const body = { name: name.value.trim(), role: role.value || undefined };
      if (expires.value) body.expires = new Date(expires.value + 'T23:59:59').toISOString();
      const t = await post('/tokens', body);
      const secret = h('input', { id: 't-secret', readonly: true, value: t.secret, size: '60', 'aria-label': 'New token' });
      shown.replaceChildren(h('div', { class: 'card secret' }, h('h2', {}, 'Token ' + t.name + ' (' + t.role + ')'),
        h('p', {}, 'Copy it now: it is shown only once.'), secret,
        h('button', { onclick: () => { secret.select(); navigator.clipboard?.writeText(t.secret); say('Copied.'); } }, 'Copy')));
      secret.select();
    });
  } }, h('div', { class: 'row' }, field('Name', name), field('Role', role), field('Expires', expires, 'empty: never')),
  h('button', { class: 'primary' }, 'Make token'))));
}

export async function audit({ page, params }) {
  const f = { actor: params.get('actor') || '', action: params.get('action') || '', since: params.get('since') || '', limit: params.get('limit') || '200' };
  const q = { ...f, since: f.since ? new Date(f.since).toISOString() : '' };
  const list = await get('/audit' + qs(q));
  const inp = (k, attrs) => h('input', { name: k, value: f[k], ...attrs });
  const form = h('form', { class: 'row filters', onsubmit: (e) => {
    e.preventDefault();
    location.hash = '#/audit' + qs(Object.fromEntries(new FormData(form).entries()));
  } }, field('Actor', inp('actor', {})), field('Action', inp('action', { placeholder: 'restore, login, group.put…' })),
  field('Since', inp('since', { type: 'datetime-local' })), field('Show', inp('limit', { type: 'number', min: '1' })), h('button', {}, 'Filter'));
  page.append(h('h1', {}, 'Audit log'), section('Entries, newest first', form, table([
    ['When', (e) => when(e.time)], ['Actor', (e) => e.actor], ['Action', (e) => e.action], ['Target', (e) => e.target || '—'],
    ['Outcome', (e) => h('span', { class: e.outcome === 'ok' ? 'good' : 'bad' }, e.outcome)], ['From', (e) => e.remote || '—'],
    ['Detail', (e) => e.detail ? h('code', { class: 'detail' }, JSON.stringify(e.detail)) : ''],
  ], list, { empty: 'No entry matches.' })));
}
