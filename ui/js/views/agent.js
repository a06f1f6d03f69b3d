// One agent: its record, actions, and a timeline of its faults, recovery
// runs and the tasks it holds.

import { api } from '../api.js';
import { h, replace, section, table, when, badge, shortId } from '../dom.js';
import { timeline } from '../chart.js';
import { nodeButtons } from '../actions.js';

export default {
  title: 'Agent',
  kinds: ['node', 'fault_opened', 'fault_resolved', 'task', 'recovery_opened', 'recovery_closed'],
  mount(root, id) {
    return {
      async refresh() {
        const q = encodeURIComponent(id);
        const [node, faults, tasks, runs] = await Promise.all([
          api.get(`/api/v1/nodes/${q}`),
          api.get(`/api/v1/faults/records?node_id=${q}&limit=200`),
          api.get(`/api/v1/tasks?node_id=${q}&limit=200`),
          api.get(`/api/v1/recovery/tasks?node_id=${q}&limit=50`),
        ]);
        const now = Date.now();
        const times = [...faults.items.map((f) => Date.parse(f.detected_at)), ...runs.items.map((r) => Date.parse(r.started_at)), ...tasks.items.map((t) => Date.parse(t.created_at)), Date.parse(node.registered_at)];
        const from = Math.min(now - 60000, ...times);
        const lanes = [
          { label: 'faults', spans: faults.items.map((f) => ({ start: Date.parse(f.detected_at), end: f.resolved_at ? Date.parse(f.resolved_at) : null, cls: `f-${f.status === 'open' ? 'failed' : 'completed'}`, title: `${f.fault_type} (${f.severity_level}) ${f.status}` })) },
          { label: 'recoveries', spans: runs.items.map((r) => ({ start: Date.parse(r.started_at), end: r.completed_at ? Date.parse(r.completed_at) : null, cls: `f-${r.status === 'succeeded' ? 'completed' : r.status === 'failed' ? 'failed' : 'running'}`, title: `${r.strategy || 'recovery'} ${r.status}` })) },
          ...tasks.items.slice(0, 20).map((t) => ({ label: shortId(t.task_id), spans: [{ start: Date.parse(t.created_at), end: ['completed', 'failed', 'cancelled'].includes(t.state) ? Date.parse(t.updated_at) : null, cls: `f-${t.state}`, title: `task ${t.task_id}: ${t.state}, attempt ${t.attempt}` }] })),
        ];
        replace(
          root,
          section(
            `Agent ${node.node_id}`,
            h('p', { class: 'big' }, badge(node.state), ` epoch ${node.epoch} · ${node.reason || ''}`),
            h(
              'dl',
              { class: 'facts' },
              h('dt', {}, 'Load'),
              h('dd', {}, `${node.load.slots_used || 0} of ${node.capacity.slots} slots`),
              h('dt', {}, 'Last heartbeat'),
              h('dd', {}, when(node.last_heartbeat_at)),
              h('dt', {}, 'Registered'),
              h('dd', {}, when(node.registered_at)),
              h('dt', {}, 'Labels'),
              h('dd', {}, Object.entries(node.labels || {}).map(([k, v]) => `${k}=${v}`).join(' ') || '—'),
              h('dt', {}, 'Health URL'),
              h('dd', {}, node.health_url || '—'),
            ),
            h('p', {}, nodeButtons(node)),
          ),
          section('Timeline', timeline(`Timeline of ${node.node_id}: faults, recovery runs and tasks`, lanes, from, now)),
          section(
            'Faults',
            table(
              'Faults of this agent',
              [
                { label: 'Detected', cell: (f) => when(f.detected_at) },
                { label: 'Type', cell: (f) => f.fault_type },
                { label: 'Severity', cell: (f) => badge(f.severity_level) },
                { label: 'Status', cell: (f) => badge(f.status) },
                { label: 'Detail', cell: (f) => (f.metadata && f.metadata.detail) || '' },
              ],
              faults.items,
              'No fault recorded.',
            ),
          ),
          section(
            'Tasks',
            table(
              'Tasks on this agent',
              [
                { label: 'Task', cell: (t) => h('code', { title: t.task_id }, shortId(t.task_id)) },
                { label: 'State', cell: (t) => badge(t.state) },
                { label: 'Priority', cell: (t) => t.priority, cls: 'num' },
                { label: 'Attempt', cell: (t) => t.attempt, cls: 'num' },
                { label: 'Checkpoint', cell: (t) => (t.checkpoint ? `v${t.checkpoint.version}` : '—') },
              ],
              tasks.items,
              'No task.',
            ),
          ),
        );
      },
      onEvent(kind, d) {
        return !d || d.node_id === id || d.old_node_id === id;
      },
    };
  },
};
