"""Charts as inline SVG, drawn on the server: no script, no inline style (colours and type come
from classes in ``verification_link/admin_overview.css``, so a strict CSP holds), a ``<title>`` and
``<desc>`` naming what each shows, and every coordinate mirrored right to left when the page is
(``rtl=True``: time runs from the right, bars grow leftwards, labels stay anchored to their side
because the SVG's ``direction`` is ``rtl``).

Two shapes: ``column_chart`` (values per day, several series side by side) and ``bar_chart``
(one horizontal bar per row, its segments stacked, optionally as shares of the row).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from django.utils import numberformat, translation
from django.utils.formats import get_format
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

WIDTH = 760
LABEL_CHARS = 30  # a row label longer than this is cut (whole in its tooltip)


@dataclass(frozen=True)
class Series:
    """One kind of value: its key, its label (legend, table, tooltips) and its CSS class."""

    key: str
    label: str
    css: str


@dataclass(frozen=True)
class Row:
    """One bar of a ``bar_chart``: its label and a value per series key, and the text at its end."""

    label: str
    values: dict[str, float]
    end_text: str = ""


def nice_ceiling(value: float, steps: int = 4) -> tuple[float, float]:
    """A round top of the value axis at or above ``value``, and its step (``top / steps``): steps
    of 1, 2 or 5 times a power of ten, at least 1, so gridlines fall on figures people read at a
    glance."""
    if value <= 0:
        return float(steps), 1.0
    raw = value / steps
    power = 10 ** math.floor(math.log10(raw))
    # Counts and seconds are whole: a step under one would write the same figure twice.
    step = max(1.0, next(m * power for m in (1, 2, 5, 10) if m * power >= raw))
    return step * steps, step


#: Steps of a time axis, in seconds: what a clock's face divides into.
TIME_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def nice_duration_ceiling(seconds: float, steps: int = 4) -> tuple[float, float]:
    """``nice_ceiling`` for a time axis: steps of whole seconds, minutes or hours (15 s, 5 min, 1 h)."""
    raw = max(seconds, 1.0) / steps
    step = next((float(s) for s in TIME_STEPS if s >= raw), None)
    if step is None:  # past a day a step: whole days
        step = 86400.0 * math.ceil(raw / 86400)
    return step * steps, step


@functools.lru_cache(maxsize=32)
def _separators(language: str | None) -> tuple[str, int, str]:
    """The language's decimal separator, grouping and thousand separator (Django's formats),
    looked up once: a chart writes hundreds of figures, and each look-up goes through the
    translation machinery."""
    return (
        str(get_format("DECIMAL_SEPARATOR", language)),
        int(get_format("NUMBER_GROUPING", language) or 0),
        str(get_format("THOUSAND_SEPARATOR", language)),
    )


def count_text(value: float, decimals: int = 0) -> str:
    """A figure in the page's language, its thousands grouped (as ``number_format`` writes it)."""
    decimal, grouping, thousand = _separators(translation.get_language())
    return numberformat.format(value if decimals else round(value), decimal, decimals, grouping, thousand, True)


def _number(value: float) -> str:
    return count_text(value)


def percent(value: float) -> str:
    return gettext("%(value)s%%") % {"value": count_text(value)}


def _c(value: float) -> str:
    """A coordinate to a tenth of a unit (of 760 across: finer is invisible)."""
    return f"{value:.1f}"


class _Canvas:
    """An SVG ``WIDTH`` wide and ``height`` high; ``x(…)`` mirrors a left-to-right coordinate when RTL."""

    def __init__(self, height: float, *, rtl: bool, ident: str, title: str, desc: str) -> None:
        self.height, self.rtl, self.ident = height, rtl, ident
        self.parts: list[str] = [
            format_html(
                '<svg class="vl-ov-chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
                'aria-labelledby="{}-title {}-desc" direction="{}"><title id="{}-title">{}</title>'
                '<desc id="{}-desc">{}</desc>',
                WIDTH,
                round(height),
                WIDTH,
                round(height),
                ident,
                ident,
                "rtl" if rtl else "ltr",
                ident,
                title,
                ident,
                desc,
            )
        ]

    def x(self, left: float, width: float = 0.0) -> float:
        """Where a shape ``width`` wide that starts at ``left`` (left to right) starts on this page."""
        return WIDTH - left - width if self.rtl else left

    # The shapes are written as plain strings — a chart has hundreds, and ``format_html`` per shape
    # cost more than the page's queries — with every text through ``html.escape`` (quotes included) and every number
    # through ``_c``: nothing else reaches the markup.

    def rect(self, left: float, top: float, width: float, height: float, css: str, tooltip: str) -> None:
        if width <= 0 or height <= 0:
            return
        self.parts.append(
            f'<rect class="{escape(css)}" x="{_c(self.x(left, width))}" y="{_c(top)}" width="{_c(width)}" '
            f'height="{_c(height)}"><title>{escape(tooltip)}</title></rect>'
        )

    def line(self, left: float, top: float, right: float, bottom: float, css: str) -> None:
        self.parts.append(
            f'<line class="{escape(css)}" x1="{_c(self.x(left))}" y1="{_c(top)}" x2="{_c(self.x(right))}" '
            f'y2="{_c(bottom)}"/>'
        )

    def text(self, left: float, top: float, text: str, *, anchor: str = "start", css: str = "vl-ov-text") -> None:
        """``anchor`` is the side of the text at ``left`` in reading order: ``start`` (the text
        follows it), ``end`` (the text ends there) or ``middle``. The text is a bidi isolate
        (FSI … PDI): "8 min 44 s" stays in its own order on a right-to-left page, and an Arabic
        word in its own on a left-to-right one."""
        self.parts.append(
            f'<text class="{escape(css)}" x="{_c(self.x(left))}" y="{_c(top)}" text-anchor="{escape(anchor)}">'
            f"\u2068{escape(text)}\u2069</text>"
        )

    def svg(self) -> SafeString:
        return mark_safe("".join([*self.parts, "</svg>"]))  # noqa: S308 - every part escaped as it was made


def column_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    values: dict[str, Sequence[int]],
    *,
    axis_every: int,
    rtl: bool,
    ident: str,
    title: str,
    desc: str,
) -> SafeString:
    """Columns per label (a day), one per series side by side, on a shared value axis. Every
    ``axis_every``-th label, counted back from the last, is written under its columns."""
    height, top, bottom, left, right = 250.0, 12.0, 34.0, 56.0, 12.0
    canvas = _Canvas(height, rtl=rtl, ident=ident, title=title, desc=desc)
    plot_width, plot_height = WIDTH - left - right, height - top - bottom
    highest = max([0, *(v for s in series for v in values[s.key])])
    ceiling, step = nice_ceiling(highest)
    for tick in range(5):
        y = top + plot_height - plot_height * (tick * step) / ceiling
        canvas.line(left, y, WIDTH - right, y, "vl-ov-grid" if tick else "vl-ov-axis")
        canvas.text(left - 6, y + 4, _number(tick * step), anchor="end")
    tooltip_text = gettext("%(label)s: %(count)s %(series)s")
    slot = plot_width / max(len(labels), 1)
    bar = slot * 0.8 / max(len(series), 1)
    for index, label in enumerate(labels):
        start = left + index * slot + slot * 0.1
        for position, kind in enumerate(series):
            value = values[kind.key][index]
            bar_height = plot_height * value / ceiling
            tooltip = tooltip_text % {
                "label": label,
                "count": _number(value),
                "series": kind.label,
            }
            canvas.rect(start + position * bar, top + plot_height - bar_height, bar, bar_height, kind.css, tooltip)
        if index == len(labels) - 1:  # the last day: ends at the plot's edge, not past it
            canvas.text(left + (index + 1) * slot, height - bottom + 16, label, anchor="end")
        elif (len(labels) - 1 - index) % axis_every == 0:
            canvas.text(left + index * slot + slot / 2, height - bottom + 16, label, anchor="middle")
    return canvas.svg()


def bar_chart(
    rows: Sequence[Row],
    series: Sequence[Series],
    *,
    shares: bool,
    rtl: bool,
    ident: str,
    title: str,
    desc: str,
    value_text: Callable[[float], str] = _number,
    ceiling_of: Callable[[float], tuple[float, float]] = nice_ceiling,
) -> SafeString:
    """A horizontal bar per row, its series stacked in order. ``shares``: each bar is its row's
    whole (100 %), segments are shares of it; else bars share one value axis (``value_text``
    writes its ticks and the tooltips; ``ceiling_of`` rounds its top and step)."""
    row_height, bar_height, top, label_width, end_width = 30.0, 18.0, 8.0, 190.0, 96.0
    axis_height = 22.0
    height = top + row_height * max(len(rows), 1) + axis_height
    canvas = _Canvas(height, rtl=rtl, ident=ident, title=title, desc=desc)
    left, plot_width = label_width, WIDTH - label_width - end_width
    bottom = top + row_height * max(len(rows), 1)
    totals = [sum(row.values.get(s.key, 0) for s in series) for row in rows]
    ceiling, step = (100.0, 25.0) if shares else ceiling_of(max([0, *totals]))
    for tick in range(5):
        x = left + plot_width * tick * step / ceiling
        canvas.line(x, top, x, bottom, "vl-ov-grid" if tick else "vl-ov-axis")
        tick_text = percent(tick * step) if shares else value_text(tick * step)
        canvas.text(x, bottom + 15, tick_text, anchor="middle")
    tooltip_text = gettext("%(row)s, %(series)s: %(value)s")
    for index, (row, total) in enumerate(zip(rows, totals, strict=True)):
        y = top + index * row_height + (row_height - bar_height) / 2
        label = row.label if len(row.label) <= LABEL_CHARS else row.label[: LABEL_CHARS - 1] + "…"
        canvas.text(left - 8, y + bar_height / 2 + 4, label, anchor="end")
        offset = 0.0
        for kind in series:
            value = row.values.get(kind.key, 0)
            scaled = (100.0 * value / total if total else 0.0) if shares else value
            width = plot_width * scaled / ceiling
            shown = percent(scaled) if shares else value_text(value)
            tooltip = tooltip_text % {"row": row.label, "series": kind.label, "value": shown}
            canvas.rect(left + offset, y, width, bar_height, kind.css, tooltip)
            offset += width
        if row.end_text:
            canvas.text(left + offset + 6, y + bar_height / 2 + 4, row.end_text)
    return canvas.svg()


def data_table(caption: str, head: Sequence[str], rows: Sequence[Sequence[str]]) -> SafeString:
    """A chart's figures as a table: a caption, column headers, and each row headed by its first
    cell. Written as strings, every cell escaped (as the shapes are; a template loop over the
    cells cost as much as drawing the charts)."""
    header = "".join(f'<th scope="col">{escape(cell)}</th>' for cell in head)
    body = "".join(
        f'<tr><th scope="row">{escape(row[0])}</th>{"".join(f"<td>{escape(cell)}</td>" for cell in row[1:])}</tr>'
        for row in rows
    )
    return mark_safe(  # noqa: S308 - every cell escaped above
        f"<table><caption>{escape(caption)}</caption><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
    )
