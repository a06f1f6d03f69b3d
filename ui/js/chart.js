// Charts drawn as SVG by the page itself (no charting library). Colours come
// from CSS classes (app.css), so the charts follow the page's theme.

import { h } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// One stacked bar of counts by state, with a legend; `label` names it for
// screen readers.
export function stateBar(label, counts, order) {
  const total = order.reduce((n, k) => n + (counts[k] || 0), 0);
  const svg = s('svg', { viewBox: '0 0 100 6', preserveAspectRatio: 'none', class: 'statebar', role: 'img', 'aria-label': `${label}: ${order.filter((k) => counts[k]).map((k) => `${counts[k]} ${k}`).join(', ') || 'none'}` });
  let x = 0;
  for (const k of order) {
    const n = counts[k] || 0;
    if (!n) continue;
    const w = (n / total) * 100;
    svg.appendChild(s('rect', { x, y: 0, width: w, height: 6, class: `f-${k}` }, s('title', {}, `${n} ${k}`)));
    x += w;
  }
  if (!total) svg.appendChild(s('rect', { x: 0, y: 0, width: 100, height: 6, class: 'f-none' }));
  const legend = h(
    'ul',
    { class: 'legend' },
    order.filter((k) => counts[k]).map((k) => h('li', {}, h('span', { class: `dot f-${k}` }), `${k} `, h('strong', {}, counts[k]))),
  );
  return h('div', { class: 'statebar-wrap' }, svg, legend);
}

// A progress bar of a recovery run: recovered, failed, the rest waiting.
export function runProgress(recovered, failed, total) {
  const t = Math.max(total, 1);
  const label = `${recovered} of ${total} tasks recovered${failed ? `, ${failed} failed` : ''}`;
  return s(
    'svg',
    { viewBox: '0 0 100 4', preserveAspectRatio: 'none', class: 'progress', role: 'img', 'aria-label': label },
    s('rect', { x: 0, y: 0, width: 100, height: 4, class: 'f-none' }),
    s('rect', { x: 0, y: 0, width: (recovered / t) * 100, height: 4, class: 'f-completed' }),
    s('rect', { x: (recovered / t) * 100, y: 0, width: (failed / t) * 100, height: 4, class: 'f-failed' }),
    s('title', {}, label),
  );
}

// A timeline: lanes of spans between `from` and `to` (ms). Each lane is
// {label, spans: [{start, end (null: still open), cls, title}]}.
export function timeline(label, lanes, from, to) {
  const laneH = 18;
  const left = 110;
  const width = 800;
  const height = lanes.length * laneH + 24;
  const x = (t) => left + ((Math.min(Math.max(t, from), to) - from) / Math.max(to - from, 1)) * (width - left - 10);
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'timeline', role: 'img', 'aria-label': label });
  // Axis: five ticks.
  for (let i = 0; i <= 4; i++) {
    const t = from + ((to - from) * i) / 4;
    const xx = x(t);
    svg.appendChild(s('line', { x1: xx, x2: xx, y1: 0, y2: height - 18, class: 'grid' }));
    svg.appendChild(s('text', { x: xx, y: height - 4, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle', class: 'tick' }, new Date(t).toLocaleTimeString()));
  }
  lanes.forEach((lane, i) => {
    const y = i * laneH + 2;
    svg.appendChild(s('text', { x: 0, y: y + 12, class: 'lane' }, lane.label.length > 16 ? `${lane.label.slice(0, 15)}…` : lane.label));
    for (const sp of lane.spans) {
      const x1 = x(sp.start);
      const x2 = Math.max(x(sp.end === null ? to : sp.end), x1 + 3);
      svg.appendChild(s('rect', { x: x1, y: y + 2, width: x2 - x1, height: laneH - 6, rx: 2, class: sp.cls }, s('title', {}, sp.title)));
    }
  });
  return svg;
}
