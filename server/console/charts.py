"""Charts drawn on the server as SVG (no script, no network): a score
histogram with the threshold marked, and horizontal bars for counts. A
withheld (suppressed) cell is drawn as a hatched stub, never as its count."""
from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 560, 200, 32


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    suppressed: bool = False
    alert: bool = False  # drawn in the warning colour


def histogram(pair: dict, title: str, threshold_label: str) -> Markup:
    """The PairScores of a report (message_dict form) as an SVG histogram."""
    bins = pair.get("bins", [])
    if not bins:
        return Markup("")
    floor, width = float(pair["floor"]), float(pair["bin_width"])
    top = 1.0
    peak = max([b["count"] for b in bins] + [1])
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def x(score: float) -> float:
        return PAD + (score - floor) / (top - floor) * plot_w

    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
             f' aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}"/>']
    bar_w = plot_w * width / (top - floor)
    for b in bins:
        lo = float(b["key"])
        if b["suppressed"]:
            h, cls = 4, "bar suppressed"
        else:
            h, cls = plot_h * b["count"] / peak, "bar"
        parts.append(f'<rect class="{cls}" x="{x(lo):.1f}" y="{HEIGHT - PAD - h:.1f}" width="{max(bar_w - 1, 1):.1f}"'
                     f' height="{h:.1f}"><title>{escape(b["key"])}: '
                     f'{"&lt;k" if b["suppressed"] else b["count"]}</title></rect>')
    for tick in _ticks(floor, top):
        parts.append(f'<text class="tick" x="{x(tick):.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle">'
                     f'{tick:.1f}</text>')
    t = float(pair.get("threshold") or 0)
    if floor <= t <= top:
        parts.append(f'<line class="threshold" x1="{x(t):.1f}" y1="{PAD - 8}" x2="{x(t):.1f}" y2="{HEIGHT - PAD}"/>'
                     f'<text class="threshold-label" x="{x(t) + 4:.1f}" y="{PAD - 10}">'
                     f'{escape(threshold_label)} {t:.3f}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _ticks(floor: float, top: float) -> list[float]:
    first = round(-(-floor * 10 // 1) / 10, 1)
    return [round(first + i / 10, 1) for i in range(int((top - first) * 10 + 1e-9) + 1)]


def bars(rows: list[Bar], title: str, withheld: str) -> Markup:
    """Horizontal bars, one per row, with its count (or `withheld`) at the end."""
    if not rows:
        return Markup("")
    row_h, label_w, count_w = 22, 200, 70
    height = row_h * len(rows) + 8
    peak = max([r.count for r in rows] + [1])
    plot_w = WIDTH - label_w - count_w
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}"'
             f' aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for i, r in enumerate(rows):
        y = 4 + i * row_h
        w = 4 if r.suppressed else max(plot_w * r.count / peak, 1)
        cls = "bar suppressed" if r.suppressed else ("bar alert" if r.alert else "bar")
        parts.append(f'<text class="label" x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(r.label)}</text>'
                     f'<rect class="{cls}" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}"/>'
                     f'<text class="count" x="{label_w + w + 6:.1f}" y="{y + 15}">'
                     f'{escape(withheld) if r.suppressed else r.count}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
