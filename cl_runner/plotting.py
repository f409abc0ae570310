"""Matplotlib helpers shared by the console tools: headless figures saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path


def figure(width: float, height: float):
    """A matplotlib ``Figure`` (Agg backend, constrained layout), size in inches."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig, stem: Path) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf`` (150 dpi); returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        path = stem.with_name(f"{stem.name}.{ext}")
        fig.savefig(path, dpi=150)
        out.append(path)
    return out
