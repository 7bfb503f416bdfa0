// settings.js: every schedule with its next and last run, and the
// notification destinations and rules with a "send test" per destination.
import { get, post, enc } from './api.js';
import { h, when, table, section, say, busy, isZero } from './ui.js';

export async function schedules({ page }) {
  const list = await get('/schedules');
  page.append(h('h1', {}, 'Schedules'), section('Every schedule', table([
    ['Group', (x) => h('a', { href: '#/groups/' + enc(x.group) }, x.group)],
    ['Kind', (x) => x.kind],
    ['When', (x) => x.schedule.cron || 'every ' + (x.schedule.every / 1e9 / 60) + ' min'],
    ['Time zone', (x) => x.schedule.timezone || 'server\'s'],
    ['Next run', (x) => isZero(x.next) ? '—' : when(x.next)],
    ['Last run', (x) => isZero(x.last) ? 'never' : when(x.last)],
    ['Last job', (x) => x.last_job ? h('a', { href: '#/jobs/' + enc(x.last_job) }, x.last_job.slice(-8)) : '—'],
  ], list, { empty: 'No group has a schedule.' })),
  h('p', { class: 'muted' }, 'Schedules are edited with their group.'));
}

export async function notifications({ page, session }) {
  const n = await get('/notifications');
  const stats = Object.fromEntries(n.stats.map((x) => [x.destination, x]));
  page.append(h('h1', {}, 'Notifications'), section('Destinations', table([
    ['Destination', (d) => d],
    ['Delivered', (d) => String((stats[d] || {}).delivered ?? 0)],
    ['Failed', (d) => String((stats[d] || {}).failed ?? 0)],
    ['Pending', (d) => String((stats[d] || {}).pending ?? 0)],
    ['', (d) => session.can('configure') ? h('button', { onclick: (e) => busy(e.target, async () => {
      await post('/notifications/test', { destination: d });
      say('Test notification sent to ' + d + '.');
    }) }, 'Send test') : ''],
  ], n.destinations, { empty: 'No destination is configured (notifications: in the configuration file).' })),
  section('Rules', table([
    ['Events', (r) => (r.events || []).join(', ') || 'every event'],
    ['Groups', (r) => (r.groups || []).join(', ') || 'all'],
    ['E-mail', (r) => (r.email || []).join(', ') || '—'],
    ['Webhooks', (r) => (r.webhooks || []).join(', ') || '—'],
  ], n.rules, { empty: 'No rule.' })),
  h('p', { class: 'muted' }, 'Destinations and rules are set in the configuration file (notifications:); see docs/design/notifications.md.'));
}
