"""Server-side SVG charts of the accounting view: no script and no network needed to see them.

Each chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` that say what it
shows, a text legend, and a ``<title>`` per bar (the numbers on hover and for screen readers);
the tables under the charts hold the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from html import escape

from .report import DayUsage, UsageRow

# Okabe-Ito: told apart with the common colour vision deficiencies
PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442"]
OTHER_COLOUR = "#7f7f7f"
INK = "#333"  # axis text: 12.6:1 on white
MAX_VOS = len(PALETTE)  # beyond that, the smaller VOs are one "other VOs" series


def _nice_top(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 1.0
    step = 10 ** (len(str(int(value))) - 1)
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * step:
            return factor * step
    return 10.0 * step


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def vo_series(days: Sequence[DayUsage]) -> list[str]:
    """The VOs drawn as series, largest first (by hours); the rest are "other VOs"."""
    hours: dict[str, float] = {}
    for d in days:
        hours[d.vo] = hours.get(d.vo, 0.0) + d.wall_hours
    ranked = sorted(hours, key=lambda vo: (-hours[vo], vo))
    return ranked[:MAX_VOS] if len(ranked) <= MAX_VOS else ranked[: MAX_VOS - 1]


def vo_label(vo: str) -> str:
    return vo or "(no VO)"


def stacked_days(
    days: Sequence[DayUsage],
    first: date,
    last: date,
    value: str,
    unit: str,
    chart_id: str,
    title: str,
) -> str:
    """Bars per day from ``first`` to ``last``, stacked by VO; ``value``: the DayUsage field."""
    series = vo_series(days)
    colours = {vo: PALETTE[i] for i, vo in enumerate(series)}
    n_days = (last - first).days + 1
    per_day: dict[date, dict[str, float]] = {}
    for d in days:
        key = d.vo if d.vo in colours else None
        stack = per_day.setdefault(d.day, {})
        name = key if key is not None else "\0other"
        stack[name] = stack.get(name, 0.0) + float(getattr(d, value))
    top = _nice_top(max((sum(s.values()) for s in per_day.values()), default=0.0))
    left, plot_h, bottom, right = 48, 180, 40, 10
    bar_w = max(4, min(24, 760 // max(n_days, 1)))
    width = left + n_days * bar_w + right
    height = plot_h + bottom + 10
    parts = []
    # axis: 0, half, top
    for frac in (0, 0.5, 1):
        y = 10 + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#ccc" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{INK}">{_fmt(top * frac)}</text>'
        )
    label_every = max(1, n_days // 8)
    for i in range(n_days):
        day = first + timedelta(days=i)
        x = left + i * bar_w
        stack = per_day.get(day, {})
        y = 10 + plot_h
        order = [vo for vo in series if vo in stack] + (["\0other"] if "\0other" in stack else [])
        for name in order:
            amount = stack[name]
            h = plot_h * amount / top
            y -= h
            colour = colours.get(name, OTHER_COLOUR)
            who = "other VOs" if name == "\0other" else vo_label(name)
            parts.append(
                f'<rect x="{x + 1}" y="{y:.1f}" width="{bar_w - 2}" height="{h:.1f}" '
                f'fill="{colour}"><title>{day}: {escape(who)} {_fmt(round(amount, 1))} '
                f"{unit}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{10 + plot_h + 16}" text-anchor="middle" '
                f'font-size="11" fill="{INK}">{day.strftime("%m-%d")}</text>'
            )
    totals = [sum(s.values()) for s in per_day.values()]
    desc = (
        f"{_fmt(round(sum(totals), 1))} {unit} in all from {first} to {last}; "
        f"the highest day reaches {_fmt(round(max(totals, default=0), 1))} {unit}."
    )
    legend_names = [vo_label(vo) for vo in series] + (
        ["other VOs"] if any("\0other" in s for s in per_day.values()) else []
    )
    legend_colours = [colours[vo] for vo in series] + [OTHER_COLOUR]
    legend = "".join(
        f'<li><span class="egi-swatch" style="background:{c}" aria-hidden="true"></span>'
        f"{escape(name)}</li>"
        for name, c in zip(legend_names, legend_colours, strict=False)
    )
    return (
        f'<figure class="egi-figure"><svg class="egi-chart" id="{chart_id}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>{"".join(parts)}</svg>'
        f'<figcaption>{escape(title)} <ul class="egi-legend" aria-label="VOs">{legend}</ul>'
        f"</figcaption></figure>"
    )


def top_users(rows: Sequence[UsageRow], chart_id: str, limit: int = 10) -> str:
    """Horizontal bars of the ``limit`` users with the most hours (all their VOs together)."""
    hours: dict[str, float] = {}
    for r in rows:
        hours[r.user] = hours.get(r.user, 0.0) + r.wall_hours
    ranked = sorted(hours.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    title = f"Top {len(ranked)} users by hours"
    if not ranked:
        return f"<p>{escape(title)}: no sessions in this range.</p>"
    top = _nice_top(ranked[0][1])
    label_w, bar_h, plot_w = 200, 22, 480
    width, height = label_w + plot_w + 70, len(ranked) * bar_h + 10
    parts = []
    for i, (user, amount) in enumerate(ranked):
        y = 5 + i * bar_h
        w = plot_w * amount / top
        shown = user if len(user) <= 28 else user[:27] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12" '
            f'fill="{INK}">{escape(shown)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{bar_h - 6}" '
            f'fill="{PALETTE[0]}"><title>{escape(user)}: {amount:.2f} hours</title></rect>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12" fill="{INK}">'
            f"{amount:.1f} h</text>"
        )
    desc = "; ".join(f"{user} {amount:.1f} hours" for user, amount in ranked)
    return (
        f'<figure class="egi-figure"><svg class="egi-chart" id="{chart_id}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>{"".join(parts)}</svg>'
        f"<figcaption>{escape(title)}</figcaption></figure>"
    )


CHART_CSS = """
.egi-figure { margin: 1rem 0 2rem; }
.egi-legend { list-style: none; padding: 0; margin: .5rem 0 0; display: flex; flex-wrap: wrap;
  gap: .25rem 1.25rem; }
.egi-swatch { display: inline-block; width: .9em; height: .9em; margin-right: .35em;
  vertical-align: -.1em; border: 1px solid #555; }
"""
