"""Small inline SVG charts for the overview, drawn on the server: nothing to fetch, no script, readable without
JavaScript and printable."""

from __future__ import annotations

from typing import Any, Sequence

from markupsafe import Markup, escape

__all__ = ["column_chart", "bar_chart", "SERIES"]

SERIES = {"RECEIVE": ("Received", "#2b6cb0"), "DELIVER": ("Delivered", "#2f855a"), "FAIL": ("Failed", "#c53030")}
"""Tracking event → its label and colour in the per-minute chart."""


def column_chart(rows: Sequence[dict[str, Any]], series: Sequence[str], label: str = "minute",
                 width: int = 560, height: int = 150) -> Markup:
    """Grouped columns, one group per row (per minute), one column per series; the time axis labelled every
    ten rows; each column's value in its tooltip."""
    top = max([1] + [int(r.get(s, 0)) for r in rows for s in series])
    pad_left, pad_bottom = 30, 18
    plot_w, plot_h = width - pad_left - 4, height - pad_bottom - 6
    group = plot_w / max(1, len(rows))
    col = max(1.0, (group - 2) / max(1, len(series)))
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
             f'<line x1="{pad_left}" y1="{6 + plot_h}" x2="{width - 4}" y2="{6 + plot_h}" class="axis"/>',
             f'<text x="{pad_left - 4}" y="12" class="tick" text-anchor="end">{top}</text>',
             f'<text x="{pad_left - 4}" y="{6 + plot_h}" class="tick" text-anchor="end">0</text>']
    for i, row in enumerate(rows):
        x0 = pad_left + i * group + 1
        for j, name in enumerate(series):
            value = int(row.get(name, 0))
            h = plot_h * value / top
            parts.append(f'<rect x="{x0 + j * col:.1f}" y="{6 + plot_h - h:.1f}" width="{col:.1f}" height="{h:.1f}" '
                         f'fill="{SERIES[name][1] if name in SERIES else "#718096"}"><title>{escape(row.get(label, ""))} '
                         f'{escape(name)}: {value}</title></rect>')
        if i % 10 == 0:
            parts.append(f'<text x="{x0:.1f}" y="{height - 4}" class="tick">{escape(str(row.get(label, ""))[11:16])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(items: Sequence[tuple[str, int]], width: int = 560, bar: int = 18) -> Markup:
    """Horizontal bars with their label and value, longest scaled to the width."""
    if not items:
        return Markup('<p class="muted">Nothing yet.</p>')
    top = max(1, max(v for _, v in items))
    label_w, height = 230, len(items) * (bar + 6)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for i, (name, value) in enumerate(items):
        y = i * (bar + 6)
        w = (width - label_w - 50) * value / top
        parts.append(f'<text x="{label_w - 6}" y="{y + bar - 5}" class="label" text-anchor="end">{escape(name)}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar}" fill="#4a5568"><title>{escape(name)}: '
                     f'{value}</title></rect><text x="{label_w + w + 4:.1f}" y="{y + bar - 5}" class="tick">{value}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
