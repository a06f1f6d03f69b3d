// Recovery runs: strategy, status and per-task progress.

import { api } from '../api.js';
import { h, replace, section, table, when, badge, shortId } from '../dom.js';
import { runProgress } from '../chart.js';
import { nodeActions } from '../actions.js';

export default {
  title: 'Recoveries',
  kinds: ['recovery_opened', 'recovery_closed', 'task'],
  mount(root) {
    return {
      async refresh() {
        const page = await api.get('/api/v1/recovery/tasks?limit=50');
        const nodeInput = h('input', { id: 'recover-node', type: 'text', placeholder: 'agent id', autocomplete: 'off' });
        replace(
          root,
          section(
            'Trigger a recovery',
            h(
              'form',
              {
                class: 'controls',
                onsubmit: (e) => {
                  e.preventDefault();
                  if (nodeInput.value.trim()) nodeActions.recover(nodeInput.value.trim());
                },
              },
              h('label', { for: 'recover-node' }, 'Agent'),
              nodeInput,
              h('button', { type: 'submit' }, 'Recover…'),
            ),
          ),
          section(
            'Recovery runs',
            page.items.length
              ? h(
                  'ul',
                  { class: 'runs' },
                  page.items.map((r) =>
                    h(
                      'li',
                      { class: 'run', 'data-run': r.recovery_id, 'data-status': r.status },
                      h(
                        'div',
                        { class: 'run-head' },
                        h('strong', {}, shortId(r.recovery_id)),
                        ' ',
                        badge(r.status),
                        ' agent ',
                        h('a', { href: `#/agents/${encodeURIComponent(r.node_id)}` }, r.node_id),
                        ` · strategy ${r.strategy || '—'} · ${r.reason || ''} · `,
                        when(r.started_at),
                      ),
                      runProgress(r.tasks_recovered, r.tasks_failed, r.tasks_total),
                      h('p', { class: 'muted progress-text' }, `${r.tasks_recovered} of ${r.tasks_total} recovered, ${r.tasks_failed} failed`),
                      h(
                        'details',
                        {},
                        h('summary', {}, `${r.items.length} task(s)`),
                        table(
                          `Tasks of run ${shortId(r.recovery_id)}`,
                          [
                            { label: 'Task', cell: (i) => h('code', { title: i.original_task_id }, shortId(i.original_task_id)) },
                            { label: 'To agent', cell: (i) => i.recovery_node_id || '—' },
                            { label: 'Strategy', cell: (i) => i.recovery_strategy || '—' },
                            { label: 'Outcome', cell: (i) => (i.completed_at ? badge(i.success ? 'recovered' : 'failed') : badge('running')) },
                            { label: 'Error', cell: (i) => i.error_message || '' },
                          ],
                          r.items,
                        ),
                      ),
                    ),
                  ),
                )
              : h('p', { class: 'muted' }, 'No recovery run yet.'),
          ),
        );
      },
      onEvent() {
        return true;
      },
    };
  },
};
