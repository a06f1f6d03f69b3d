// Operator actions: each asks for confirmation in a dialog, then shows the
// outcome (the API's own message when it refuses, e.g. 403 for a reader).

import { h, replace } from './dom.js';
import { api } from './api.js';

const dialog = () => document.getElementById('confirm');

function ask(title, message, fields) {
  const dlg = dialog();
  replace(dlg.querySelector('h2'), title);
  replace(dlg.querySelector('.message'), message);
  const box = replace(dlg.querySelector('.fields'));
  for (const f of fields || []) {
    const id = `f-${f.name}`;
    const input =
      f.type === 'select'
        ? h('select', { id, name: f.name }, f.options.map((o) => h('option', { value: o.value }, o.label)))
        : h('input', { id, name: f.name, type: 'text', value: f.value || '', placeholder: f.placeholder || '', autocomplete: 'off' });
    box.appendChild(h('label', { for: id }, f.label));
    box.appendChild(input);
  }
  return new Promise((resolve) => {
    dlg.returnValue = '';
    const done = () => {
      dlg.removeEventListener('close', done);
      if (dlg.returnValue !== 'ok') return resolve(null);
      const values = {};
      for (const f of fields || []) values[f.name] = box.querySelector(`[name="${f.name}"]`).value.trim();
      resolve(values);
    };
    dlg.addEventListener('close', done);
    dlg.showModal();
  });
}

export function outcome(ok, text) {
  const el = document.getElementById('outcome');
  el.className = ok ? 'outcome ok' : 'outcome err';
  el.setAttribute('role', ok ? 'status' : 'alert');
  replace(el, h('span', {}, text), h('button', { type: 'button', class: 'link', 'aria-label': 'dismiss', onclick: () => el.classList.add('hidden') }, '×'));
}

// Runs `method path body` after confirmation; `describe(answer)` says what
// happened. Returns the answer, or null (cancelled or refused).
export async function act({ title, message, fields, path, body, describe }) {
  const values = await ask(title, message, fields);
  if (values === null) return null;
  const p = typeof path === 'function' ? path(values) : path;
  const b = typeof body === 'function' ? body(values) : body;
  try {
    const ans = await api.post(p, b);
    outcome(true, describe ? describe(ans, values) : `${title}: done`);
    // The view shows the change now, not at its next event or refresh.
    window.dispatchEvent(new CustomEvent('rd-changed'));
    return ans;
  } catch (e) {
    outcome(false, `${title} refused: ${e.message} (${e.status ? `${e.status} ` : ''}${e.code})`);
    return null;
  }
}

const reasonField = { name: 'reason', label: 'Reason (recorded in the audit trail)', placeholder: 'optional' };

function withReason(v) {
  return v.reason ? { reason: v.reason } : {};
}

export const nodeActions = {
  drain: (id) =>
    act({
      title: `Drain ${id}`,
      message: `Drain agent ${id}? It gets no new work and its tasks move to other agents.`,
      fields: [reasonField],
      path: `/api/v1/nodes/${encodeURIComponent(id)}/drain`,
      body: withReason,
      describe: (a) => `Drained ${id}: now ${a.state}`,
    }),
  isolate: (id) =>
    act({
      title: `Isolate ${id}`,
      message: `Isolate agent ${id}? Its epoch is fenced and its tasks are moved to other agents.`,
      fields: [reasonField],
      path: `/api/v1/nodes/${encodeURIComponent(id)}/isolate`,
      body: withReason,
      describe: (a) => `Isolated ${id}: now ${a.state}`,
    }),
  readmit: (id) =>
    act({
      title: `Readmit ${id}`,
      message: `Readmit agent ${id}? It may register again and get work.`,
      fields: [reasonField],
      path: `/api/v1/nodes/${encodeURIComponent(id)}/readmit`,
      body: withReason,
      describe: (a) => `Readmitted ${id}: now ${a.state}`,
    }),
  recover: (id) =>
    act({
      title: `Recover ${id}`,
      message: `Recover the tasks of ${id} now? A working agent is drained first.`,
      fields: [
        {
          name: 'strategy',
          label: 'Strategy',
          type: 'select',
          options: [
            { value: '', label: 'let the policy choose' },
            { value: 'fast_recovery', label: 'fast_recovery' },
            { value: 'safe_recovery', label: 'safe_recovery' },
            { value: 'degraded_service', label: 'degraded_service' },
          ],
        },
      ],
      path: '/api/v1/recovery/trigger',
      body: (v) => (v.strategy ? { node_id: id, strategy: v.strategy } : { node_id: id }),
      describe: (a) => `Recovery ${a.recovery_id.slice(0, 8)} of ${id} ${a.status}: ${a.tasks_total} task(s)`,
    }),
};

export function nodeButtons(node) {
  const b = (label, fn, cls) => h('button', { type: 'button', class: cls || '', onclick: () => fn(node.node_id) }, label);
  const st = node.state;
  return h(
    'span',
    { class: 'actions' },
    ['alive', 'suspect', 'probation'].includes(st) && b('Drain', nodeActions.drain),
    !['isolated', 'left'].includes(st) && b('Isolate', nodeActions.isolate, 'danger'),
    ['isolated', 'draining'].includes(st) && b('Readmit', nodeActions.readmit),
    st !== 'left' && b('Recover…', nodeActions.recover),
  );
}

export const backupNow = () =>
  act({
    title: 'Take a backup',
    message: 'Take a backup of the state now, to every backup target?',
    path: '/api/v1/backup/trigger',
    body: {},
    describe: (a) => `Backup ${a.status}${a.queued ? ' (queued)' : ''}: ${a.backup_ids.map((id, i) => `${id.slice(0, 8)} on ${a.targets[i]}`).join(', ')}`,
  });

export const reloadPolicies = () =>
  act({
    title: 'Reload policies',
    message: 'Reload the Lua recovery policies from disk on this replica?',
    path: '/api/v1/policies/reload',
    body: {},
    describe: (a) => `Policies reloaded: version ${a.policy_version} (was ${a.previous_version})`,
  });

export const consistencyCheck = () =>
  act({
    title: 'Run a consistency check',
    message: 'Compare the state digests of every replica now?',
    path: '/api/v1/consistency/check',
    body: {},
    describe: (a) => `Consistency check ${a.check_id.slice(0, 8)} at index ${a.index}: ${a.status}`,
  });
