// The dashboard's shell: the router (#/page), the session's token, the live
// event stream, and when each view refreshes.
//
// A view refreshes when it is shown, when an event it cares about arrives
// (at most once a second, however many arrive), and, while there is no
// event stream, every few seconds; only the visible view ever fetches.

import { api } from './api.js';
import { Live } from './live.js';
import { h, replace } from './dom.js';
import overview from './views/overview.js';
import agents from './views/agents.js';
import agent from './views/agent.js';
import faults from './views/faults.js';
import recoveries from './views/recoveries.js';
import tasks from './views/tasks.js';
import backups from './views/backups.js';
import audit from './views/audit.js';

const VIEWS = { overview, agents, faults, recoveries, tasks, backups, audit };
const POLL_MS = 3000; // without an event stream
const RECONCILE_MS = 60000; // with one: a full refresh now and then anyway
const MIN_GAP_MS = 1000; // between two refreshes of a view
const RETRY_MS = [1000, 2000, 4000, 8000]; // after a failed refresh (a leader change, a restart)

const main = document.getElementById('main');
const errorBox = document.getElementById('error');
const liveStatus = document.getElementById('live-status');
const replicaInfo = document.getElementById('replica');

let cur = null; // {name, inst, last, busy, again, timer}

function route() {
  const parts = (location.hash.replace(/^#\/?/, '') || 'overview').split('/');
  const name = parts[0];
  if (name === 'agents' && parts[1]) {
    let id = parts.slice(1).join('/');
    try {
      id = decodeURIComponent(id);
    } catch {
      /* shown as typed */
    }
    return { name: 'agent', view: agent, param: id };
  }
  return Object.hasOwn(VIEWS, name) ? { name, view: VIEWS[name], param: null } : { name: 'overview', view: overview, param: null };
}

function show() {
  const r = route();
  if (cur && cur.timer) clearTimeout(cur.timer);
  const root = h('div', { class: 'view', id: `view-${r.name}` });
  replace(main, h('h1', { class: 'sr-only' }, r.param ? `${r.view.title} ${r.param}` : r.view.title), root);
  document.title = `${r.view.title}${r.param ? ` ${r.param}` : ''} · recoveryd`;
  for (const a of document.querySelectorAll('nav.main a')) {
    if (a.getAttribute('href') === `#/${r.name === 'agent' ? 'agents' : r.name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  cur = { name: r.name, view: r.view, inst: r.view.mount(root, r.param), last: 0, busy: false, again: false, timer: null };
  refresh(cur);
}

async function refresh(c) {
  if (c !== cur) return;
  if (c.busy) {
    c.again = true;
    return;
  }
  c.busy = true;
  c.last = Date.now();
  try {
    await c.inst.refresh();
    c.failures = 0;
    if (c === cur) errorBox.classList.add('hidden');
  } catch (e) {
    c.failures = (c.failures || 0) + 1;
    if (c === cur) {
      replace(errorBox, `Could not load ${c.view.title.toLowerCase()}: ${e.message}${e.code ? ` (${e.code})` : ''}`);
      errorBox.classList.remove('hidden');
      // The leader may have moved (this replica now a follower): look
      // again, and try the view again soon rather than at the next event
      // or reconciliation (a minute with a live stream).
      whereAmI();
      retry(c);
    }
  } finally {
    c.busy = false;
  }
  if (c.again) {
    c.again = false;
    schedule(c);
  }
}

function retry(c) {
  if (c !== cur || c.timer) return;
  const wait = RETRY_MS[Math.min(c.failures, RETRY_MS.length) - 1];
  c.timer = setTimeout(() => {
    c.timer = null;
    refresh(c);
  }, wait);
}

// A refresh soon, but not more than one per MIN_GAP_MS.
function schedule(c) {
  if (c !== cur || c.timer) return;
  const wait = Math.max(50, c.last + (c.view.minGap || MIN_GAP_MS) - Date.now());
  c.timer = setTimeout(() => {
    c.timer = null;
    refresh(c);
  }, wait);
}

// This replica's place in the cluster: a follower serves stale reads and
// sends writes to the leader, whose dashboard the header links.
let whereAt = 0;
async function whereAmI() {
  whereAt = Date.now();
  try {
    const r = await api.get('/api/v1/cluster/replicas', { local: true });
    const self = r.replicas.find((x) => x.id === r.self);
    const leader = r.replicas.find((x) => x.id === r.leader);
    api.follower = r.self !== r.leader;
    api.leaderUrl = leader ? leader.api_url : null;
    replace(
      replicaInfo,
      `replica ${r.self} (${self ? self.role : '?'})`,
      api.follower && leader && leader.api_url ? [' · ', h('a', { href: `${leader.api_url}/ui/${location.hash}` }, `leader: replica ${leader.id}`)] : '',
    );
  } catch (e) {
    replace(replicaInfo, `replica: ${e.message}`);
  }
}

const live = new Live({
  onEvent(kind, data) {
    if (kind === 'leader') whereAmI();
    if (!cur) return;
    const kinds = cur.view.kinds;
    if (kinds && !kinds.includes(kind)) return;
    if (cur.inst.onEvent(kind, data)) schedule(cur);
  },
  onResync() {
    whereAmI();
    if (cur) schedule(cur);
  },
  onStatus(mode, detail) {
    liveStatus.dataset.mode = mode;
    replace(liveStatus, mode === 'live' ? '● live' : mode === 'polling' ? `○ refreshing every ${POLL_MS / 1000} s` : '○ connecting');
    liveStatus.title = detail || (mode === 'live' ? 'updates arrive from the event stream' : '');
  },
});

setInterval(() => {
  // Without the stream no leader event says the leader moved: look again.
  if (live.mode !== 'live' && !document.hidden && Date.now() - whereAt > 10000) whereAmI();
  if (!cur || document.hidden || cur.busy || cur.timer) return;
  const every = live.mode === 'live' ? RECONCILE_MS : cur.inst.pollEvery || POLL_MS;
  if (Date.now() - cur.last >= every) refresh(cur);
}, 500);

// ---- the token, once per browser session --------------------------------

const tokenDlg = document.getElementById('token-dialog');
const tokenInput = document.getElementById('token-input');
const tokenWhy = document.getElementById('token-why');
let asking = false;

function askToken(why) {
  if (asking) return;
  asking = true;
  replace(tokenWhy, why || 'The API needs a bearer token.');
  tokenInput.value = '';
  tokenDlg.showModal();
}

tokenDlg.addEventListener('close', () => {
  asking = false;
  if (tokenDlg.returnValue === 'ok') {
    api.token = tokenInput.value.trim();
    start();
  }
});

api.onUnauthorized = (msg) => askToken(msg);

document.getElementById('sign-out').addEventListener('click', () => {
  api.token = '';
  live.stop();
  askToken('Signed out. Enter a token to go on.');
});

// Who the token is: shown beside the replica, so an operator sees at once
// whether the actions offered will be allowed (the API decides all the same).
async function whoAmI() {
  try {
    const me = await api.get('/api/v1/auth/whoami', { local: true });
    replace(document.getElementById('who'), `${me.principal} (${me.role})`);
  } catch {
    replace(document.getElementById('who'), '');
  }
}

function start() {
  whereAmI();
  whoAmI();
  live.restart();
  show();
}

window.addEventListener('hashchange', show);
window.addEventListener('rd-changed', () => cur && schedule(cur));
start();
