// The REST API from the page: same origin, the bearer token of this browser
// session (sessionStorage) on every call. A follower serves reads with
// ?stale=true (it would send consistent reads and writes to the leader with
// a 307 to another origin, where the token does not follow: redirects are
// not followed). A read redirected so tells that this replica became a
// follower since the page last looked (its leader stepped down): it is
// asked again with ?stale=true.

const TOKEN_KEY = 'recoveryd.token';

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export const api = {
  follower: false, // set from /api/v1/cluster/replicas
  leaderUrl: null,
  onUnauthorized: null, // called on a 401 to the token in use

  get token() {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  },
  set token(t) {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  },

  headers(extra) {
    const hd = { Accept: 'application/json', ...extra };
    if (this.token) hd.Authorization = `Bearer ${this.token}`;
    return hd;
  },

  async request(method, path, body, { local = false } = {}) {
    let url = path;
    if (method === 'GET' && this.follower && !local)
      url += (url.includes('?') ? '&' : '?') + 'stale=true';
    const sent = this.token;
    const init = { method, headers: this.headers(), redirect: 'manual', cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch (e) {
      // Redirects are not followed (redirect: 'manual'): a failure here is
      // the network's, whatever this replica's role.
      throw new ApiError(0, 'unreachable', `cannot reach the engine: ${e.message}`);
    }
    if (res.type === 'opaqueredirect') {
      if (method === 'GET' && !local && !this.follower) {
        this.follower = true;
        return this.request(method, path, body, { local });
      }
      throw new ApiError(307, 'not_leader', `this replica is a follower: open the leader's dashboard (${this.leaderUrl || 'unknown'}/ui/) to act`);
    }
    let doc = null;
    const text = await res.text();
    if (text) {
      try {
        doc = JSON.parse(text);
      } catch {
        doc = null;
      }
    }
    if (!res.ok) {
      const err = (doc && doc.error) || {};
      // Only a 401 to the token in use asks for another (an answer to the
      // token just replaced must not reopen the dialog).
      if (res.status === 401 && this.onUnauthorized && sent === this.token) this.onUnauthorized(err.message);
      throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || `${res.status} ${res.statusText}`, err.details);
    }
    return doc;
  },

  get(path, opts) {
    return this.request('GET', path, undefined, opts);
  },
  post(path, body) {
    return this.request('POST', path, body === undefined ? {} : body);
  },

  // Counts by state of this replica's applied state, from /metrics (one
  // small request instead of listing every task or agent):
  // {nodes: {alive: 3, ...}, tasks: {pending: 1, ...}}.
  async stateCounts() {
    const res = await fetch('/metrics', { headers: this.headers({ Accept: 'text/plain' }), cache: 'no-store', redirect: 'error' });
    if (!res.ok) throw new ApiError(res.status, `http_${res.status}`, `/metrics: ${res.status} ${res.statusText}`);
    const text = await res.text();
    const out = { nodes: {}, tasks: {} };
    for (const m of text.matchAll(/^recoveryd_(nodes|tasks)\{state="([a-z_]+)"\} (\d+)$/gm)) out[m[1]][m[2]] = Number(m[3]);
    return out;
  },

  // Every page of a list route (limit 1000 each), up to `max` items.
  async all(path, max = 100000) {
    const items = [];
    let cursor = null;
    do {
      const sep = path.includes('?') ? '&' : '?';
      const page = await this.get(`${path}${sep}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && items.length < max);
    return items;
  },
};
