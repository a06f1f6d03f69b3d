"""An SVG of a chaos run (no plotting library): acknowledged checkpoint
writes per second and their p50/p99 latency over time, failed or unknown
writes in red, every fault a shaded band labelled with its kind.

    python3 plot.py RESULT.json HISTORY.jsonl OUT.svg
"""

from __future__ import annotations

import json
import sys
from html import escape
from typing import Any, Dict, List

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from history import Fault, load  # noqa: E402

COLORS = {"kill_replica": "#d62728", "pause_replica": "#ff7f0e", "kill_agent": "#9467bd",
          "pause_agent": "#8c564b", "delay": "#17becf", "loss": "#bcbd22", "cut": "#7f7f7f",
          "stall": "#e377c2", "replica_delay": "#1f77b4", "replica_loss": "#aec7e8",
          "oneway": "#2ca02c", "partition": "#000000", "disk_full": "#c49c94",
          "damage": "#f7b6d2", "clock_jump": "#dbdb8d"}
W, H, LEFT, RIGHT, TOP = 960, 600, 60, 20, 30
PANEL = 200


def write_svg(path: str, stats: Dict[str, Any], faults: List[Fault], title: str) -> None:
    series = stats["per_second"]
    t0 = stats["t0"]
    span = max(len(series), 1)
    xs = (W - LEFT - RIGHT) / span

    def x(t: float) -> float:
        return LEFT + max(0.0, min(float(span), t)) * xs

    top_ok = max([s["ok"] + s["failed"] for s in series] + [1])
    top_ms = max([s["p99_ms"] or 0 for s in series] + [1])
    p: List[str] = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
                    f'font-family="sans-serif" font-size="11">',
                    f'<rect width="{W}" height="{H}" fill="white"/>',
                    f'<text x="{LEFT}" y="18" font-size="14">{escape(title)}</text>']
    panels = [(TOP, "checkpoints/s (green ok, red failed or unknown)", top_ok),
              (TOP + PANEL + 60, "latency ms (p50 blue, p99 black)", top_ms)]
    rows: Dict[str, int] = {}
    for f in faults:
        row = rows.setdefault(f.kind, len(rows))
        for y0, _, _ in panels:
            p.append(f'<rect x="{x(f.start - t0):.1f}" y="{y0}" '
                     f'width="{max(1.0, x(f.end - t0) - x(f.start - t0)):.1f}" height="{PANEL}" '
                     f'fill="{COLORS.get(f.kind, "#999")}" opacity="0.15"/>')
        yb = TOP + 2 * PANEL + 90 + row * 0  # one legend line per kind below
        p.append(f'<rect x="{x(f.start - t0):.1f}" y="{yb + 4 * row}" '
                 f'width="{max(1.0, x(f.end - t0) - x(f.start - t0)):.1f}" height="3" '
                 f'fill="{COLORS.get(f.kind, "#999")}"><title>{escape(f.kind)} '
                 f'{escape(f.target)}</title></rect>')
    for i, kind in enumerate(rows):
        p.append(f'<text x="{LEFT + i * 120}" y="{H - 8}" fill="{COLORS.get(kind, "#999")}">'
                 f'&#9632; {escape(kind)}</text>')
    for y0, label, top in panels:
        p.append(f'<rect x="{LEFT}" y="{y0}" width="{W - LEFT - RIGHT}" height="{PANEL}" '
                 f'fill="none" stroke="#444"/>')
        p.append(f'<text x="{LEFT + 4}" y="{y0 + 12}">{escape(label)}</text>')
        p.append(f'<text x="{LEFT - 4}" y="{y0 + 10}" text-anchor="end">{top:g}</text>')
        p.append(f'<text x="{LEFT - 4}" y="{y0 + PANEL}" text-anchor="end">0</text>')

    def line(key: str, y0: int, top: float, color: str) -> None:
        pts = [f"{x(s['t'] + 0.5):.1f},{y0 + PANEL - (s[key] or 0) / top * PANEL:.1f}"
               for s in series if s[key] is not None]
        if pts:
            p.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}"/>')

    line("ok", panels[0][0], top_ok, "green")
    line("failed", panels[0][0], top_ok, "red")
    line("p50_ms", panels[1][0], top_ms, "blue")
    line("p99_ms", panels[1][0], top_ms, "black")
    for t in range(0, span + 1, max(1, span // 10)):
        p.append(f'<text x="{x(t):.1f}" y="{TOP + 2 * PANEL + 75}" text-anchor="middle">'
                 f'{t}s</text>')
    if stats.get("healed_at") is not None:
        hx = x(stats["healed_at"])
        p.append(f'<line x1="{hx:.1f}" x2="{hx:.1f}" y1="{TOP}" y2="{TOP + 2 * PANEL + 60}" '
                 f'stroke="green" stroke-dasharray="4"/>')
        p.append(f'<text x="{hx + 3:.1f}" y="{TOP + 24}" fill="green">healed</text>')
    p.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(p) + "\n")


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        res = json.load(f)
    _, faults = load(sys.argv[2])
    write_svg(sys.argv[3], res["stats"], faults, f"chaos seed {res.get('seed')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
