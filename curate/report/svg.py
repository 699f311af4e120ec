"""Inline SVG charts (no JavaScript, no external files): horizontal bars, paired bars, histograms, a
funnel and quantile ranges. Every chart is `<svg class="chart" data-points="N">` with N > 0 marks, and
every mark has a `<title>` with its exact value (a tooltip in browsers)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from curate.report.markup import Markup, h

WIDTH = 720
LABEL_W = 190
ROW_H = 20
COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
Fmt = Callable[[float], str]


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.3g}"


def _short(label: str, n: int = 28) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _svg(width: int, height: int, title: str, points: int, *body: Markup) -> Markup:
    return h(
        "svg",
        h("title", title),
        *body,
        xmlns="http://www.w3.org/2000/svg",
        width=width,
        height=height,
        viewBox=f"0 0 {width} {height}",
        role="img",
        class_="chart",
        data_points=points,
        aria_label=title,
    )


def _text(x: float, y: float, text: str, anchor: str = "start", cls: str | None = None) -> Markup:
    return h("text", text, x=f"{x:.1f}", y=f"{y:.1f}", text_anchor=anchor, class_=cls)


def _rect(x: float, y: float, w: float, hgt: float, color: str, tip: str) -> Markup:
    return h(
        "rect", h("title", tip), x=f"{x:.1f}", y=f"{y:.1f}", width=f"{max(w, 0.5):.1f}", height=f"{hgt:.1f}", fill=color
    )


def bar_chart(rows: Sequence[tuple[str, float]], title: str, fmt: Fmt = _num, color: str = COLORS[0]) -> Markup:
    """Horizontal bars, one per (label, value), in the given order."""
    if not rows:
        return Markup("")
    top = max((v for _, v in rows), default=0) or 1
    span = WIDTH - LABEL_W - 90
    marks = []
    for i, (label, value) in enumerate(rows):
        y = 6 + i * ROW_H
        marks.append(_text(LABEL_W - 6, y + 14, _short(label), "end"))
        marks.append(_rect(LABEL_W, y + 3, span * value / top, ROW_H - 6, color, f"{label}: {fmt(value)}"))
        marks.append(_text(LABEL_W + span * value / top + 4, y + 14, fmt(value), cls="v"))
    return _svg(WIDTH, 12 + len(rows) * ROW_H, title, len(rows), *marks)


def paired_bar_chart(
    rows: Sequence[tuple[str, float, float]], title: str, names: tuple[str, str], fmt: Fmt = _num
) -> Markup:
    """Two bars per label (e.g. target and realized share), with a legend."""
    if not rows:
        return Markup("")
    top = max(max(a, b) for _, a, b in rows) or 1
    span = WIDTH - LABEL_W - 90
    marks = [
        _rect(LABEL_W, 4, 12, 10, COLORS[0], names[0]),
        _text(LABEL_W + 16, 13, names[0]),
        _rect(LABEL_W + 110, 4, 12, 10, COLORS[1], names[1]),
        _text(LABEL_W + 126, 13, names[1]),
    ]
    row_h = ROW_H + 8
    for i, (label, a, b) in enumerate(rows):
        y = 22 + i * row_h
        marks.append(_text(LABEL_W - 6, y + 16, _short(label), "end"))
        for j, (name, value) in enumerate(((names[0], a), (names[1], b))):
            yy = y + 2 + j * 12
            marks.append(_rect(LABEL_W, yy, span * value / top, 11, COLORS[j], f"{label} {name}: {fmt(value)}"))
            marks.append(_text(LABEL_W + span * value / top + 4, yy + 10, fmt(value), cls="v"))
    return _svg(WIDTH, 28 + len(rows) * row_h, title, 2 * len(rows), *marks)


def histogram(edges: Sequence[float], counts: Sequence[int], title: str, fmt: Fmt = _num, width: int = WIDTH) -> Markup:
    """Vertical bars over bins [edges[i], edges[i+1]); `counts` has one fewer item than `edges`."""
    if not counts or sum(counts) == 0:
        return Markup("")
    height, left, bottom = 150, 64, 22
    plot_w, plot_h = width - left - 10, height - bottom - 10
    top = max(counts)
    bar_w = plot_w / len(counts)
    marks = [
        h("line", x1=left, y1=height - bottom, x2=width - 10, y2=height - bottom, class_="axis"),
        _text(left - 4, 16, _num(top), "end", "v"),
        _text(left - 4, height - bottom, "0", "end", "v"),
    ]
    for i, n in enumerate(counts):
        bh = plot_h * n / top
        tip = f"[{fmt(edges[i])}, {fmt(edges[i + 1])}): {n:,}"
        marks.append(_rect(left + i * bar_w + 1, height - bottom - bh, bar_w - 2, bh, COLORS[0], tip))
    ticks = sorted({0, len(counts) // 2, len(counts)})
    for i in ticks:
        anchor = "start" if i == 0 else "end" if i == len(counts) else "middle"
        marks.append(_text(left + i * bar_w, height - 6, fmt(edges[i]), anchor, "v"))
    return _svg(width, height, title, sum(1 for n in counts if n), *marks)


def funnel(steps: Sequence[tuple[str, int, int]], title: str) -> Markup:
    """Centred bars for (step, records remaining, records removed by the step), widest first."""
    if not steps:
        return Markup("")
    top = max(n for _, n, _ in steps) or 1
    span = WIDTH - LABEL_W - 180  # room on the right for "1,234,567  −123,456"
    center = LABEL_W + span / 2
    row_h = ROW_H + 6
    marks = []
    for i, (label, remaining, removed) in enumerate(steps):
        y = 6 + i * row_h
        w = span * remaining / top
        tip = f"{label}: {remaining:,} remain" + (f", {removed:,} removed" if removed else "")
        marks.append(_text(LABEL_W - 6, y + 16, _short(label), "end"))
        marks.append(_rect(center - w / 2, y + 3, w, row_h - 6, COLORS[2], tip))
        note = f"{remaining:,}" + (f"  −{removed:,}" if removed else "")
        marks.append(_text(LABEL_W + span + 6, y + 16, note, cls="v"))
    return _svg(WIDTH, 12 + len(steps) * row_h, title, len(steps), *marks)


def ranges(
    rows: Sequence[tuple[str, float, float, float]], lo: float, hi: float, title: str, fmt: Fmt = _num
) -> Markup:
    """Per label a line from p10 to p90 with a dot at the median, on a shared [lo, hi] axis."""
    if not rows:
        return Markup("")
    span = WIDTH - LABEL_W - 30
    scale = (hi - lo) or 1

    def x(v: float) -> float:
        return LABEL_W + span * (v - lo) / scale

    marks = [_text(LABEL_W, 12, fmt(lo), "start", "v"), _text(LABEL_W + span, 12, fmt(hi), "end", "v")]
    for i, (label, p10, p50, p90) in enumerate(rows):
        y = 20 + i * ROW_H
        tip = f"{label}: p10 {fmt(p10)}, median {fmt(p50)}, p90 {fmt(p90)}"
        marks.append(_text(LABEL_W - 6, y + 14, _short(label), "end"))
        marks.append(h("line", x1=f"{x(lo):.1f}", y1=y + 10, x2=f"{x(hi):.1f}", y2=y + 10, class_="grid"))
        marks.append(_rect(x(p10), y + 6, x(p90) - x(p10), 8, COLORS[0], tip))
        marks.append(h("circle", h("title", tip), cx=f"{x(p50):.1f}", cy=y + 10, r=5, fill=COLORS[1]))
    return _svg(WIDTH, 26 + len(rows) * ROW_H, title, len(rows), *marks)
