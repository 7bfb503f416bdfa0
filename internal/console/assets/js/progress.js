// progress.js: a job's live progress (Server-Sent Events) as bars with
// bytes, rate and ETA per disk.
import { follow } from './api.js';
import { h, bytes, dur } from './ui.js';

// liveProgress returns an element that follows job id until it ends;
// onDone(state) is called then. stop() (returned) ends the stream.
export function liveProgress(id, onDone) {
  const box = h('div', { class: 'progress-box', 'aria-live': 'off' });
  const rows = new Map();
  const state = h('p', { class: 'muted' }, 'Waiting for progress…');
  box.append(state);
  const stop = follow(id, (ev) => {
    if (ev.kind === 'job-done') {
      const st = (ev.data && ev.data.state) || 'ended';
      state.textContent = 'Job ' + st + '.';
      if (onDone) onDone(st);
      return;
    }
    if (ev.kind === 'vm-failed' || ev.kind === 'vm-retry') {
      box.append(h('p', { class: ev.kind === 'vm-failed' ? 'bad' : 'muted' }, (ev.vm || '') + ': ' + (ev.error || ev.msg || ev.kind)));
      return;
    }
    if (!ev.disk || !ev.total) return;
    state.textContent = 'Running.';
    const key = (ev.vm || '') + '/' + ev.disk;
    let r = rows.get(key);
    if (!r) {
      r = { bar: h('progress', { max: '100', value: '0' }), text: h('span', { class: 'num' }), t0: Date.now(), d0: ev.done || 0 };
      rows.set(key, r);
      box.append(h('div', { class: 'prog' }, h('span', {}, key), r.bar, r.text));
    }
    const pct = Math.min(100, 100 * (ev.done || 0) / ev.total);
    r.bar.value = pct;
    r.bar.setAttribute('aria-label', key + ' ' + pct.toFixed(0) + '%');
    let rate = ev.rate;
    if (!rate) {
      const secs = (Date.now() - r.t0) / 1000;
      rate = secs > 0.5 ? ((ev.done || 0) - r.d0) / secs : 0;
    }
    const eta = ev.eta || (rate > 0 ? (ev.total - (ev.done || 0)) / rate : null);
    r.text.textContent = bytes(ev.done || 0) + ' of ' + bytes(ev.total) +
      (ev.kind === 'disk-done' ? ' · done' : ' · ' + (rate ? bytes(rate) + '/s' : '…') + ' · ETA ' + dur(eta));
  });
  return { el: box, stop };
}
