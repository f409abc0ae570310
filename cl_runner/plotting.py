"""Matplotlib conventions shared by every plot of the console tools (``cl-summarize``,
``cl-analyze``): one style (:data:`STYLE`, applied by :func:`styled` and
:func:`save_figure`), headless figures saved as PNG and PDF, legends outside the axes, long
labels wrapped. docs/plots.md lists the conventions.

matplotlib is imported inside the functions: importing this module stays cheap (``cl-run
--help`` does not load matplotlib)."""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

#: rcParams of every plot: TrueType fonts embedded in PDF/PS (Type 42, not Type 3 bitmaps:
#: what publishers and arXiv ask for), font sizes readable at a figure width of 3-7 inches,
#: saved figures cropped to their content (nothing cut, no wide margins)
STYLE: dict[str, Any] = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 10,
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
