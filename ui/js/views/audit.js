// The audit trail: who did what, newest first, filtered on the server.

import { api } from '../api.js';
import { h, replace, section, table, when, badge } from '../dom.js';

export default {
  title: 'Audit',
  // Every write leaves a record; any event is a hint that one may be new.
  kinds: null,
  mount(root) {
    const f = { principal: '', action: '', target: '' };
    let items = [];
    let next = null;
    const inputs = Object.keys(f).map((k) =>
      h('input', {
        id: `audit-${k}`,
        type: 'search',
        placeholder: 'exact',
        onchange: (e) => {
          f[k] = e.target.value.trim();
          view.refresh();
        },
      }),
    );
    const out = h('div');
    replace(
      root,
      section(
        'Audit trail',
        h(
          'div',
          { class: 'controls' },
          Object.keys(f).map((k, i) => [h('label', { for: `audit-${k}` }, k), inputs[i]]),
        ),
        out,
      ),
    );
    const query = () =>
      Object.entries(f)
        .filter(([, v]) => v)
        .map(([k, v]) => `&${k}=${encodeURIComponent(v)}`)
        .join('');
    function draw() {
      replace(
        out,
        table(
          'Audit records',
          [
            { label: 'Time', cell: (a) => when(a.time) },
            { label: 'Principal', cell: (a) => a.principal },
            { label: 'Role', cell: (a) => a.role },
            { label: 'Action', cell: (a) => h('code', {}, a.action) },
            { label: 'Target', cell: (a) => a.target || '' },
            { label: 'Outcome', cell: (a) => [badge(a.outcome.status < 400 ? 'ok' : 'refused'), ` ${a.outcome.status}${a.outcome.error ? ` ${a.outcome.error}` : ''}`] },
            { label: 'Source', cell: (a) => a.source || '' },
          ],
          items,
          'No record.',
        ),
        next
          ? h(
              'p',
              {},
              h(
                'button',
                {
                  type: 'button',
                  onclick: async () => {
                    const page = await api.get(`/api/v1/audit?limit=100&cursor=${encodeURIComponent(next)}${query()}`);
                    items = items.concat(page.items);
                    next = page.next_cursor;
                    draw();
                  },
                },
                'Older records',
              ),
            )
          : '',
      );
    }
    const view = {
      async refresh() {
        const page = await api.get(`/api/v1/audit?limit=100${query()}`);
        items = page.items;
        next = page.next_cursor;
        draw();
      },
      onEvent() {
        return true;
      },
    };
    return view;
  },
};
