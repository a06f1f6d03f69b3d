// Agents: a sortable, filterable table of every agent, paged (50 rows are in
// the page at a time, so 10,000 agents cost one filter and sort in memory,
// not 10,000 rows of DOM). Node events update rows in place.

import { api } from '../api.js';
import { h, replace, ago, badge } from '../dom.js';
import { nodeButtons } from '../actions.js';
import { NODE_STATES } from './overview.js';

const PAGE = 50;

const COLUMNS = [
  { key: 'node_id', label: 'Agent', value: (n) => n.node_id },
  { key: 'state', label: 'State', value: (n) => NODE_STATES.indexOf(n.state) },
  { key: 'load', label: 'Load', num: true, value: (n) => (n.load.slots_used || 0) / Math.max(n.capacity.slots || 1, 1) },
  { key: 'tasks', label: 'Tasks', num: true, value: (n) => n.tasks },
  { key: 'faults', label: 'Open faults', num: true, value: (n, v) => v.faults.get(n.node_id) || 0 },
  { key: 'heartbeat', label: 'Last heartbeat', value: (n) => (n.last_heartbeat_at ? Date.parse(n.last_heartbeat_at) : 0) },
  { key: 'labels', label: 'Labels', value: (n) => labelText(n) },
];

function labelText(n) {
  return Object.entries(n.labels || {})
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

export default {
  title: 'Agents',
  kinds: ['node', 'fault_opened', 'fault_resolved', 'task'],
  mount(root) {
    const v = {
      nodes: new Map(),
      faults: new Map(), // node id -> open faults
      sort: 'node_id',
      dir: 1,
      filter: '',
      state: '',
      page: 0,
      loaded: false,
    };
    const filterInput = h('input', {
      id: 'agent-filter',
      type: 'search',
      placeholder: 'id, label=value, reason',
      oninput: (e) => {
        v.filter = e.target.value.trim().toLowerCase();
        v.page = 0;
        draw();
      },
    });
    const stateSelect = h(
      'select',
      {
        id: 'agent-state',
        onchange: (e) => {
          v.state = e.target.value;
          v.page = 0;
          draw();
        },
      },
      h('option', { value: '' }, 'every state'),
      NODE_STATES.map((s) => h('option', { value: s }, s)),
    );
    // The column headers sort too; this is for a phone, where they are hidden.
    const sortSelect = h(
      'select',
      {
        id: 'agent-sort',
        onchange: (e) => {
          const [key, dir] = e.target.value.split(':');
          v.sort = key;
          v.dir = Number(dir);
          draw();
        },
      },
      COLUMNS.flatMap((c) => [h('option', { value: `${c.key}:1` }, `${c.label} ↑`), h('option', { value: `${c.key}:-1` }, `${c.label} ↓`)]),
    );
    const count = h('p', { class: 'muted', 'aria-live': 'polite' });
    const body = h('tbody');
    const head = h('tr');
    const pager = h('nav', { class: 'pager', 'aria-label': 'Agent pages' });
    replace(
      root,
      h(
        'section',
        { class: 'card' },
        h('h2', {}, 'Agents'),
        h(
          'div',
          { class: 'controls' },
          h('label', { for: 'agent-filter' }, 'Filter'),
          filterInput,
          h('label', { for: 'agent-state' }, 'State'),
          stateSelect,
          h('label', { for: 'agent-sort' }, 'Sort'),
          sortSelect,
        ),
        count,
        h('div', { class: 'scroll' }, h('table', { id: 'agents' }, h('caption', { class: 'sr-only' }, 'Agents'), h('thead', {}, head), body)),
        pager,
      ),
    );

    function rows() {
      let list = [...v.nodes.values()];
      if (v.state) list = list.filter((n) => n.state === v.state);
      if (v.filter) {
        const f = v.filter;
        list = list.filter((n) => n.node_id.toLowerCase().includes(f) || labelText(n).toLowerCase().includes(f) || (n.reason || '').toLowerCase().includes(f));
      }
      const col = COLUMNS.find((c) => c.key === v.sort);
      list.sort((a, b) => {
        const x = col.value(a, v);
        const y = col.value(b, v);
        const c = x < y ? -1 : x > y ? 1 : a.node_id < b.node_id ? -1 : a.node_id > b.node_id ? 1 : 0;
        return c * v.dir;
      });
      return list;
    }

    function draw() {
      replace(
        head,
        COLUMNS.map((c) =>
          h(
            'th',
            { scope: 'col', class: c.num ? 'num' : null, 'aria-sort': v.sort === c.key ? (v.dir > 0 ? 'ascending' : 'descending') : 'none' },
            h(
              'button',
              {
                type: 'button',
                class: 'sort',
                onclick: () => {
                  v.dir = v.sort === c.key ? -v.dir : 1;
                  v.sort = c.key;
                  draw();
                },
              },
              c.label,
              v.sort === c.key ? (v.dir > 0 ? ' ▲' : ' ▼') : '',
            ),
          ),
        ),
        h('th', { scope: 'col' }, 'Actions'),
      );
      sortSelect.value = `${v.sort}:${v.dir}`;
      const list = rows();
      const pages = Math.max(1, Math.ceil(list.length / PAGE));
      v.page = Math.min(v.page, pages - 1);
      const shown = list.slice(v.page * PAGE, (v.page + 1) * PAGE);
      replace(count, v.loaded ? `${list.length} of ${v.nodes.size} agents` : 'Loading…');
      replace(
        body,
        shown.map((n) =>
          h(
            'tr',
            { 'data-node': n.node_id },
            h('td', { 'data-label': 'Agent' }, h('a', { href: `#/agents/${encodeURIComponent(n.node_id)}` }, n.node_id)),
            h('td', { 'data-label': 'State', class: 'state' }, badge(n.state)),
            h('td', { 'data-label': 'Load', class: 'num' }, `${n.load.slots_used || 0}/${n.capacity.slots}`),
            h('td', { 'data-label': 'Tasks', class: 'num' }, n.tasks),
            h('td', { 'data-label': 'Open faults', class: 'num' }, v.faults.get(n.node_id) || 0),
            h('td', { 'data-label': 'Last heartbeat' }, ago(n.last_heartbeat_at)),
            h('td', { 'data-label': 'Labels' }, labelText(n)),
            h('td', { 'data-label': 'Actions' }, nodeButtons(n)),
          ),
        ),
      );
      const go = (p) => () => {
        v.page = p;
        draw();
      };
      replace(
        pager,
        h('button', { type: 'button', onclick: go(0), disabled: v.page === 0 }, '« First'),
        h('button', { type: 'button', onclick: go(v.page - 1), disabled: v.page === 0 }, '‹ Previous'),
        h('span', {}, ` Page ${v.page + 1} of ${pages} `),
        h('button', { type: 'button', onclick: go(v.page + 1), disabled: v.page >= pages - 1 }, 'Next ›'),
        h('button', { type: 'button', onclick: go(pages - 1), disabled: v.page >= pages - 1 }, 'Last »'),
      );
    }
    draw();

    // Events redraw at most five times a second: a mass failure sends an
    // event per agent, and each draw filters and sorts every agent.
    let pending = null;
    let drawn = 0;
    function redraw() {
      if (pending !== null) return;
      const wait = drawn + 200 - Date.now();
      const run = () => {
        pending = null;
        drawn = Date.now();
        draw();
      };
      if (wait <= 0) run(); // the first event draws at once
      else pending = setTimeout(run, wait);
    }

    return {
      // Large fleets refresh less often when polling (one page per 1000).
      get pollEvery() {
        return Math.max(3000, Math.ceil(v.nodes.size / 1000) * 1500);
      },
      async refresh() {
        const [nodes, faults] = await Promise.all([api.all('/api/v1/nodes'), api.all('/api/v1/faults/records?status=open', 10000)]);
        v.nodes = new Map(nodes.map((n) => [n.node_id, n]));
        v.faults = new Map();
        for (const f of faults) v.faults.set(f.node_id, (v.faults.get(f.node_id) || 0) + 1);
        v.loaded = true;
        draw();
      },
      onEvent(kind, d) {
        if (kind === 'node') {
          const n = v.nodes.get(d.node_id);
          if (!n) return true; // a new agent: fetch it
          n.state = d.state;
          if (d.epoch) n.epoch = d.epoch;
          if (d.reason !== undefined) n.reason = d.reason;
          redraw();
          return false;
        }
        if (kind === 'fault_opened' || kind === 'fault_resolved') {
          const c = (v.faults.get(d.node_id) || 0) + (kind === 'fault_opened' ? 1 : -1);
          v.faults.set(d.node_id, Math.max(0, c));
          redraw();
          return false;
        }
        if (kind === 'task') {
          // Task counts move in place (a refetch of every agent per task
          // event would be a storm with a large fleet).
          const ended = ['completed', 'failed', 'cancelled', 'pending'].includes(d.state);
          const from = v.nodes.get(d.old_node_id);
          const to = v.nodes.get(d.node_id);
          if (from && (d.old_node_id !== d.node_id || ended) && d.old_state && !['pending', 'completed', 'failed', 'cancelled'].includes(d.old_state))
            from.tasks = Math.max(0, from.tasks - 1);
          if (to && !ended && (d.old_node_id !== d.node_id || ['pending', null, undefined].includes(d.old_state))) to.tasks += 1;
          redraw();
        }
        return false;
      },
    };
  },
};
