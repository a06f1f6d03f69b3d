// Faults: a timeline of the last records (one lane per agent) and the records.

import { api } from '../api.js';
import { h, replace, section, table, when, badge, agentLink, CLUSTER } from '../dom.js';
import { timeline } from '../chart.js';

export default {
  title: 'Faults',
  kinds: ['fault_opened', 'fault_resolved'],
  mount(root) {
    let status = '';
    return {
      async refresh() {
        const page = await api.get(`/api/v1/faults/records?limit=200${status ? `&status=${status}` : ''}`);
        const items = page.items;
        const now = Date.now();
        const from = Math.min(now - 10 * 60000, ...items.map((f) => Date.parse(f.detected_at)));
        const byNode = new Map();
        for (const f of items) {
          // A cluster-wide fault (a partition) has no agent: its own lane.
          const lane = f.node_id === null ? CLUSTER : f.node_id;
          if (!byNode.has(lane)) byNode.set(lane, []);
          byNode.get(lane).push({ start: Date.parse(f.detected_at), end: f.resolved_at ? Date.parse(f.resolved_at) : null, cls: `f-${f.status === 'open' ? f.severity_level : 'completed'}`, title: `${lane}: ${f.fault_type} (${f.severity_level}) ${f.status}` });
        }
        const lanes = [...byNode.entries()].slice(0, 30).map(([label, spans]) => ({ label, spans }));
        const sel = h(
          'select',
          {
            id: 'fault-status',
            onchange: (e) => {
              status = e.target.value;
              this.refresh();
            },
          },
          ['', 'open', 'resolved'].map((s) => h('option', { value: s, selected: s === status }, s || 'all')),
        );
        replace(
          root,
          section(
            'Fault timeline',
            lanes.length ? timeline('Fault timeline: one lane per agent, a bar from detection to resolution', lanes, from, now) : h('p', { class: 'muted' }, 'No fault recorded.'),
          ),
          section(
            'Fault records',
            h('div', { class: 'controls' }, h('label', { for: 'fault-status' }, 'Status'), sel),
            table(
              'Fault records',
              [
                { label: 'Detected', cell: (f) => when(f.detected_at) },
                { label: 'Agent', cell: (f) => agentLink(f.node_id) },
                { label: 'Type', cell: (f) => f.fault_type },
                { label: 'Severity', cell: (f) => badge(f.severity_level) },
                { label: 'Status', cell: (f) => badge(f.status) },
                { label: 'Action', cell: (f) => (f.recovery_action ? `${f.recovery_action.action}: ${f.recovery_action.detail || ''}` : '—') },
                { label: 'Detail', cell: (f) => (f.metadata && f.metadata.detail) || '' },
                { label: 'Resolved', cell: (f) => when(f.resolved_at) },
              ],
              items,
              'No fault recorded.',
            ),
          ),
        );
      },
      onEvent() {
        return true;
      },
    };
  },
};
