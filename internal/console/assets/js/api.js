// api.js: the console's only way to the server, the public REST API
// (/api/v1) with the session cookie; changes carry the CSRF header.

let csrf = '';
let unauthorized = () => {};

export function setCSRF(token) { csrf = token || ''; }
export function onUnauthorized(fn) { unauthorized = fn; }

export class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  if (method !== 'GET') opts.headers['X-Kura-CSRF'] = csrf;
  const resp = await fetch('/api/v1' + path, opts);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!resp.ok) {
    if (resp.status === 401 && path !== '/login') unauthorized();
    throw new APIError(resp.status, (data && data.error) || resp.statusText);
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body ?? {});
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

// qs builds a query string from the non-empty values of obj.
export function qs(obj) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? '?' + s : '';
}

export const enc = encodeURIComponent;

const kinds = ['job-start', 'vm-start', 'disk-start', 'disk-progress', 'disk-done', 'vm-done',
  'vm-failed', 'vm-retry', 'message', 'job-done'];

// follow streams a job's progress events (Server-Sent Events) to onEvent
// until the job ends; it returns a function that stops following.
export function follow(jobID, onEvent) {
  const es = new EventSource('/api/v1/jobs/' + enc(jobID) + '/events');
  for (const k of kinds) {
    es.addEventListener(k, (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch { return; }
      onEvent(ev);
      if (k === 'job-done') es.close();
    });
  }
  return () => es.close();
}
