// Small DOM helpers. Text from the API only ever goes in as text nodes or
// attribute values (never as HTML), so a node id or a reason cannot inject
// markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// "3s ago", "2m ago", from an RFC 3339 time; "never" for null.
export function ago(iso) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

// A time element showing local time with the full UTC time as its title.
export function when(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

export function badge(state) {
  return h('span', { class: `badge s-${String(state).replace(/[^a-z_]/g, '')}` }, state);
}

// What a cluster-wide record (a partition: node_id null) names for its agent.
export const CLUSTER = '(cluster)';

// The agent a fault names, a link to its page; a cluster-wide fault names
// no agent and gets no link (an empty one was a link without a name).
export function agentLink(nodeId) {
  return nodeId === null || nodeId === undefined ? h('span', { class: 'muted' }, CLUSTER) : h('a', { href: `#/agents/${encodeURIComponent(nodeId)}` }, nodeId);
}

export function shortId(id) {
  return id && id.length > 12 ? id.slice(0, 8) : id || '';
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

// A table from column definitions: {label, cell(row) -> node|text, cls}.
export function table(caption, columns, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted' }, empty || 'None.');
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      {},
      h('caption', { class: 'sr-only' }, caption),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.cls }, c.label)))),
      h(
        'tbody',
        {},
        rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: c.cls, 'data-label': c.label }, c.cell(r))))),
      ),
    ),
  );
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

// A section twice as wide in the overview's grid (one column on a phone).
export function wideSection(title, ...children) {
  const s = section(title, ...children);
  s.classList.add('wide');
  return s;
}
