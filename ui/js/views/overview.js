// Overview: quorum and replicas, agents by state, open faults, running
// recoveries, the last backup, mode and partition suspicion.

import { api } from '../api.js';
import { h, replace, section, wideSection, table, when, badge, shortId, ago, agentLink } from '../dom.js';
import { stateBar } from '../chart.js';
import { backupNow, reloadPolicies } from '../actions.js';

export const NODE_STATES = ['alive', 'probation', 'suspect', 'draining', 'isolated', 'failed', 'left'];

export default {
  title: 'Overview',
  // Every event kind changes something shown here; seven requests a
  // refresh, so at most one every 2 s however busy the stream is.
  kinds: null,
  minGap: 2000,
  mount(root) {
    return {
      async refresh() {
        const [replicas, status, nodes, faults, runs, backups, counts] = await Promise.all([
          api.get('/api/v1/cluster/replicas', { local: true }),
          api.get('/api/v1/faults/status'),
          api.get('/api/v1/health/cluster', { local: true }),
          api.get('/api/v1/faults/records?status=open&limit=10'),
          api.get('/api/v1/recovery/tasks?limit=20'),
          api.get('/api/v1/backups?limit=1'),
          api.stateCounts().then((c) => c.nodes),
        ]);
        const running = runs.items.filter((r) => r.status === 'initiated' || r.status === 'running');
        const leader = replicas.replicas.find((r) => r.id === replicas.leader);
        const last = backups.items[0];
        replace(
          root,
          h(
            'div',
            { class: 'grid' },
            wideSection(
              'Quorum',
              h(
                'p',
                { class: 'big', id: 'quorum' },
                nodes.quorum.has_quorum ? badge('quorum') : badge('no_quorum'),
                ' ',
                leader ? `leader: replica ${leader.id}` : 'no leader',
                ` · term ${replicas.term}`,
              ),
              table(
                'Replicas',
                [
                  { label: 'Replica', cell: (r) => [`${r.id}`, r.self ? h('span', { class: 'muted' }, ' (this page)') : ''] },
                  { label: 'Role', cell: (r) => badge(r.role) },
                  { label: 'Voter', cell: (r) => r.voter_role },
                  { label: 'Applied index', cell: (r) => (r.applied_index === null ? '—' : r.applied_index), cls: 'num' },
                  { label: 'Reachable', cell: (r) => (r.reachable ? 'yes' : badge('unreachable')) },
                  { label: 'API', cell: (r) => (r.api_url ? h('a', { href: `${r.api_url}/ui/` }, r.api_url) : '—') },
                ],
                replicas.replicas,
              ),
            ),
            section(
              'Mode',
              h('p', { class: 'big', id: 'mode' }, badge(status.mode), status.partition_suspected ? [' ', badge('partition_suspected')] : ''),
              h(
                'dl',
                { class: 'facts' },
                h('dt', {}, 'Partition suspected'),
                h('dd', {}, status.partition_suspected ? 'yes' : 'no'),
                h('dt', {}, 'Faults in the last hour'),
                h('dd', {}, status.faults_last_hour),
                h('dt', {}, 'Detection latency p50 / p99'),
                h('dd', {}, `${status.detection_latency_ms.p50 ?? '—'} / ${status.detection_latency_ms.p99 ?? '—'} ms`),
                h('dt', {}, 'Recovery success rate'),
                h('dd', {}, status.recovery_success_rate === null ? '—' : `${Math.round(status.recovery_success_rate * 100)}%`),
                h('dt', {}, 'Policy version'),
                h('dd', {}, h('code', {}, status.policy_version)),
              ),
              h('p', { class: 'actions' }, h('button', { type: 'button', onclick: reloadPolicies }, 'Reload policies…')),
            ),
            section(
              'Agents',
              h('p', { class: 'big' }, h('a', { href: '#/agents' }, `${nodes.total_nodes} agents`), ` · ${nodes.overall_health}`),
              stateBar('Agents by state', counts, NODE_STATES),
            ),
            section(
              `Open faults (${status.active_faults})`,
              table(
                'Open faults',
                [
                  { label: 'Agent', cell: (f) => agentLink(f.node_id) },
                  { label: 'Type', cell: (f) => f.fault_type },
                  { label: 'Severity', cell: (f) => badge(f.severity_level) },
                  { label: 'Detected', cell: (f) => ago(f.detected_at) },
                ],
                faults.items,
                'No open fault.',
              ),
            ),
            section(
              `Running recoveries (${running.length})`,
              table(
                'Running recoveries',
                [
                  { label: 'Run', cell: (r) => h('a', { href: '#/recoveries' }, shortId(r.recovery_id)) },
                  { label: 'Agent', cell: (r) => r.node_id },
                  { label: 'Strategy', cell: (r) => r.strategy || '—' },
                  { label: 'Progress', cell: (r) => `${r.tasks_recovered + r.tasks_failed}/${r.tasks_total}` },
                ],
                running,
                'No recovery running.',
              ),
            ),
            section(
              'Last backup',
              last
                ? h('p', {}, badge(last.status), ` ${shortId(last.backup_id)} on ${last.target}, `, when(last.started_at))
                : h('p', { class: 'muted' }, 'No backup yet.'),
              h('p', { class: 'actions' }, h('button', { type: 'button', onclick: backupNow }, 'Take a backup…')),
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
