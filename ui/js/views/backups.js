// Backups and consistency checks.

import { api } from '../api.js';
import { h, replace, section, table, when, badge, shortId, bytes } from '../dom.js';
import { backupNow, consistencyCheck } from '../actions.js';

export default {
  title: 'Backups',
  kinds: ['backup', 'consistency'],
  mount(root) {
    return {
      async refresh() {
        const [backups, checks] = await Promise.all([api.get('/api/v1/backups?limit=50'), api.get('/api/v1/consistency/checks?limit=20')]);
        replace(
          root,
          section(
            'Backups',
            h('p', { class: 'actions' }, h('button', { type: 'button', onclick: backupNow }, 'Take a backup…')),
            table(
              'Backups',
              [
                { label: 'Backup', cell: (b) => h('code', { title: b.backup_id }, shortId(b.backup_id)) },
                { label: 'Target', cell: (b) => b.target },
                { label: 'Status', cell: (b) => badge(b.status) },
                { label: 'Index', cell: (b) => (b.index === null ? '—' : b.index), cls: 'num' },
                { label: 'Size', cell: (b) => bytes(b.size), cls: 'num' },
                { label: 'Started', cell: (b) => when(b.started_at) },
                { label: 'Verified', cell: (b) => (b.verified === null ? '—' : b.verified ? 'ok' : badge('failed')) },
                { label: 'Error', cell: (b) => b.error || '' },
              ],
              backups.items,
              'No backup yet.',
            ),
          ),
          section(
            'Consistency checks',
            h('p', { class: 'actions' }, h('button', { type: 'button', onclick: consistencyCheck }, 'Run a check…')),
            table(
              'Consistency checks',
              [
                { label: 'Check', cell: (c) => h('code', { title: c.check_id }, shortId(c.check_id)) },
                { label: 'Index', cell: (c) => c.index, cls: 'num' },
                { label: 'Status', cell: (c) => badge(c.status) },
                { label: 'Digests', cell: (c) => Object.entries(c.digests).map(([r, d]) => `${r}: ${d || '—'}`).join(', ') },
                { label: 'Diverged', cell: (c) => c.diverged.join(', ') || '—' },
                { label: 'Started', cell: (c) => when(c.started_at) },
              ],
              checks.items,
              'No check yet.',
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
