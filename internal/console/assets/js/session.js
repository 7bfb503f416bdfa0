// session.js: who is signed in and what the role may do.
import { setCSRF } from './api.js';

// session is the signed-in principal; can() says what its role may do
// (the server checks again: this only hides what would be refused).
export const session = {
  user: '', role: '', groups: [],
  can(what) {
    const r = this.role;
    switch (what) {
      case 'configure': return r === 'admin';
      case 'run': return r === 'admin' || r === 'operator';
      case 'audit': return r === 'admin' || r === 'auditor';
      case 'all': return r !== 'restore';
    }
    return false;
  },
};

// signedIn records a principal (from /login or /whoami).
export function signedIn(p) {
  Object.assign(session, { user: p.user, role: p.role, groups: p.groups || [] });
  setCSRF(p.csrf);
}

