// Tasks: counts by state, and the tasks with priority, attempt and
// checkpoint version (filtered by state on the server, 100 at a time).

import { api } from '../api.js';
import { h, replace, section, table, when, badge, shortId } from '../dom.js';
import { stateBar } from '../chart.js';

const STATES = ['pending', 'assigned', 'running', 'recovering', 'paused', 'completed', 'failed', 'cancelled'];

export default {
  title: 'Tasks',
  kinds: ['task'],
  mount(root) {
    let state = '';
    let cursors = [null];
    return {
      async refresh() {
        const cur = cursors[cursors.length - 1];
        const [page, counts] = await Promise.all([
          api.get(`/api/v1/tasks?limit=100${state ? `&state=${state}` : ''}${cur ? `&cursor=${encodeURIComponent(cur)}` : ''}`),
          api.stateCounts().then((c) => c.tasks),
        ]);
        const sel = h(
          'select',
          {
            id: 'task-state',
            onchange: (e) => {
              state = e.target.value;
              cursors = [null];
              this.refresh();
            },
          },
          ['', ...STATES].map((s) => h('option', { value: s, selected: s === state }, s || 'every state')),
        );
        replace(
          root,
          section('Tasks by state', stateBar('Tasks by state', counts, STATES)),
          section(
            'Tasks',
            h('div', { class: 'controls' }, h('label', { for: 'task-state' }, 'State'), sel),
            table(
              'Tasks',
              [
                { label: 'Task', cell: (t) => h('code', { title: t.task_id }, shortId(t.task_id)) },
                { label: 'State', cell: (t) => badge(t.state) },
                { label: 'Priority', cell: (t) => [`${t.priority}`, t.critical ? ' critical' : ''], cls: 'num' },
                { label: 'Agent', cell: (t) => (t.node_id ? h('a', { href: `#/agents/${encodeURIComponent(t.node_id)}` }, t.node_id) : '—') },
                { label: 'Attempt', cell: (t) => `${t.attempt}/${t.max_attempts}`, cls: 'num' },
                { label: 'Checkpoint', cell: (t) => (t.checkpoint ? `v${t.checkpoint.version}` : '—') },
                { label: 'Updated', cell: (t) => when(t.updated_at) },
              ],
              page.items,
              'No task.',
            ),
            h(
              'nav',
              { class: 'pager', 'aria-label': 'Task pages' },
              h(
                'button',
                {
                  type: 'button',
                  disabled: cursors.length === 1,
                  onclick: () => {
                    cursors.pop();
                    this.refresh();
                  },
                },
                '‹ Previous',
              ),
              h(
                'button',
                {
                  type: 'button',
                  disabled: !page.next_cursor,
                  onclick: () => {
                    cursors.push(page.next_cursor);
                    this.refresh();
                  },
                },
                'Next ›',
              ),
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
