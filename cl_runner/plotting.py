"""Matplotlib conventions shared by every plot of the console tools (``cl-summarize``,
``cl-analyze``): one style (:data:`STYLE`, applied by :func:`styled` and
:func:`save_figure`), headless figures saved as PNG and PDF at a paper's column width
(:data:`COLUMN_WIDTH`), one colour and marker per strategy in every figure
(:func:`strategy_style`), legends outside the axes and never taller than them
(:func:`legend_below`, :func:`fit_legend`), long labels wrapped. docs/plots.md lists the
conventions.

matplotlib is imported inside the functions: importing this module stays cheap (``cl-run
--help`` does not load matplotlib)."""

from __future__ import annotations

import functools
import math
import textwrap
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

#: the default figure width (inches): one column of a two-column paper (ICML, NeurIPS, ICLR
#: and IEEE columns are 3.25-3.5 in), where the figure is placed at 100% so its fonts keep
#: their 8-9 pt; ``cl-summarize figure_width=7`` for a figure across both columns
COLUMN_WIDTH = 3.3

#: rcParams of every plot: TrueType fonts embedded in PDF/PS (Type 42, not Type 3 bitmaps:
#: what publishers and arXiv ask for), text at 8 pt and titles at 9 pt (a paper's caption
#: size, at the figure's own width), saved figures cropped to their content
STYLE: dict[str, Any] = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 9,
    "figure.labelsize": 8,
    "axes.grid": False,
    "grid.alpha": 0.3,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
}

#: characters per line of a wrapped legend entry or tick label
LABEL_WIDTH = 28
#: lines a wrapped label may take; longer ones end with an ellipsis
LABEL_LINES = 3

F = TypeVar("F", bound=Callable[..., Any])

#: the colour and marker of every strategy the project ships or plans (docs/plots.md): the
#: same in every figure and summary, whatever else is plotted. Colours from matplotlib's
#: tab10/tab20 (families share a hue: er/er_ace red, der/derpp brown, ewc/si/mas blue);
#: multitask, the upper bound, black. Other names: :func:`strategy_style` derives one.
STRATEGY_STYLES: dict[str, tuple[str, str]] = {
    "naive": ("#7f7f7f", "o"),
    "stable_sgd": ("#bcbd22", "v"),
    "multitask": ("#000000", "*"),
    "mcsgd": ("#2ca02c", "s"),
    "ewc": ("#1f77b4", "^"),
    "si": ("#17becf", "<"),
    "mas": ("#6baed6", ">"),
    "lwf": ("#9467bd", "D"),
    "agem": ("#ff7f0e", "P"),
    "gem": ("#fdae6b", "X"),
    "er": ("#d62728", "h"),
    "er_ace": ("#ff9896", "H"),
    "der": ("#8c564b", "p"),
    "derpp": ("#c49c94", "d"),
    "icarl": ("#e377c2", "8"),
    "bic": ("#f7b6d2", "<"),
    "wa": ("#c5b0d5", ">"),
    "gdumb": ("#98df8a", "v"),
    "supsup": ("#393b79", "s"),
    "impresslearn": ("#637939", "D"),
}
#: colours and markers a strategy missing from :data:`STRATEGY_STYLES` draws from
#: (matplotlib's tab20b, then a marker), by a hash of its name
FALLBACK_COLOURS = ("#393b79", "#5254a3", "#6b6ecf", "#9c9ede", "#637939", "#8ca252",
                    "#b5cf6b", "#cedb9c", "#8c6d31", "#bd9e39", "#e7ba52", "#e7cb94",
                    "#843c39", "#ad494a", "#d6616b", "#e7969c", "#7b4173", "#a55194",
                    "#ce6dbd", "#de9ed6")
FALLBACK_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">", "p", "*")


def strategy_style(name: str | None) -> tuple[str, str]:
    """``(colour, marker)`` of strategy ``name``: :data:`STRATEGY_STYLES`, else derived from
    the CRC-32 of the name (the same in every process and every figure, whatever other
    strategies are plotted); ``None`` (no strategy) is grey circles."""
    if name is None:
        return "#7f7f7f", "o"
    if name in STRATEGY_STYLES:
        return STRATEGY_STYLES[name]
    code = zlib.crc32(name.encode())
    return (FALLBACK_COLOURS[code % len(FALLBACK_COLOURS)],
            FALLBACK_MARKERS[(code // len(FALLBACK_COLOURS)) % len(FALLBACK_MARKERS)])


@contextmanager
def style() -> Iterator[None]:
    """Context in which matplotlib uses :data:`STYLE` (and the headless Agg backend)."""
    import matplotlib
    matplotlib.use("Agg")
    with matplotlib.rc_context(STYLE):
        yield


def styled(func: F) -> F:
    """Decorator: run a plotting function inside :func:`style` (fonts and sizes are read
    when the artists are made, so the whole function must run in it)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
            return func(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def figure(width: float, height: float):
    """A matplotlib ``Figure`` (Agg backend, constrained layout), size in inches. Call it
    inside :func:`style` (a :func:`styled` function) to get the house font sizes."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # a canvas that can draw (text extents, tests) without pyplot
    return fig


def save_figure(fig, stem: Path) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf`` under :data:`STYLE` (150 dpi, cropped
    to the content, TrueType fonts in the PDF); returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    with style():
        for ext in ("png", "pdf"):
            path = stem.with_name(f"{stem.name}.{ext}")
            fig.savefig(path)
            out.append(path)
    return out


def wrap_label(text: str, width: int = LABEL_WIDTH, max_lines: int = LABEL_LINES) -> str:
    """``text`` on lines of at most ``width`` characters, broken preferably after the
    `` / `` between group keys, then at spaces, then inside words; at most ``max_lines``
    lines, the last ending with ``…`` when text was dropped."""
    lines: list[str] = []
    for part in text.split(" / "):
        piece = part if not lines else f"{lines[-1]} / {part}"
        if lines and len(piece) <= width:
            lines[-1] = piece
        else:
            lines += textwrap.wrap(part, width, break_long_words=True,
                                   break_on_hyphens=False) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 1].rstrip() + "…"
    return "\n".join(lines)


#: inches per character of 8 pt text (a mean over labels of names, digits and ``=``), and
#: the width a legend entry takes besides its text (handle, padding, column spacing)
CHAR_INCHES, ENTRY_INCHES = 0.062, 0.55


def legend_below(fig, handles: Sequence[Any], labels: Sequence[str], *, width: float,
                 title: str | None = None):
    """One figure legend below every axes (constrained layout makes room), in as many
    columns as fit ``width`` inches (the figure's width): the longest label decides, labels
    wrapped to the column's width (at most :data:`LABEL_WIDTH` characters). Call
    :func:`fit_legend` once the figure is complete, so the legend is never taller than the
    axes. Returns the ``Legend``."""
    longest = max((len(label) for label in labels), default=1)
    ncols = 1
    for n in range(min(len(labels), 4), 0, -1):
        chars = int((width / n - ENTRY_INCHES) / CHAR_INCHES)
        if chars >= min(longest, 16):  # up to 16 characters may not be wrapped
            ncols = n
            break
    chars = max(12, min(LABEL_WIDTH, int((width / ncols - ENTRY_INCHES) / CHAR_INCHES)))
    return fig.legend(handles, [wrap_label(label, chars) for label in labels],
                      loc="outside lower center", ncols=ncols, title=title, frameon=False,
                      columnspacing=1.0, handlelength=1.8)


def fit_legend(fig, max_height: float = 9.0, min_axes: float = 1.2):
    """Make ``fig`` taller until its smallest visible axes is at least as tall as its legend
    and at least ``min_axes`` inches (room for the y label), up to ``max_height`` inches
    (constrained layout gives the added height to the axes); returns ``fig``. A figure
    without a legend is returned unchanged."""
    if not fig.legends:
        return fig
    for _ in range(4):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legend = fig.legends[0].get_window_extent(renderer).height / fig.dpi
        axes = min(ax.get_window_extent(renderer).height / fig.dpi
                   for ax in fig.axes if ax.get_visible())
        short = max(legend, min_axes) - axes
        height = fig.get_figheight()
        if short <= 0 or height >= max_height:
            break
        fig.set_figheight(min(max_height, height + short + 0.05))
    return fig


def title_width(width: float, size: float = 9.0) -> int:
    """Characters of a ``size`` pt title that fit ``width`` inches (for :func:`wrap_label`)."""
    return max(20, math.floor(0.95 * width / (CHAR_INCHES * size / 8)))


def legend_outside(fig, handles: Sequence[Any], labels: Sequence[str], *,
                   where: str = "right", title: str | None = None, ncols: int = 1,
                   width: int = LABEL_WIDTH):
    """One figure legend outside every axes: ``right`` (upper right, one column) or
    ``bottom`` (below the axes, ``ncols`` columns); labels wrapped by :func:`wrap_label` at
    ``width`` characters. Constrained layout makes room for it. Returns the ``Legend``.

    Raises:
        KeyError: ``where`` is neither ``right`` nor ``bottom``.
    """
    loc = {"right": "outside right upper", "bottom": "outside lower center"}[where]
    return fig.legend(handles, [wrap_label(label, width) for label in labels], loc=loc,
                      title=title, ncols=ncols, frameon=False)
