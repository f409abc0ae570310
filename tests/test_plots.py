"""The plot conventions of docs/plots.md, checked on the figures themselves: TrueType fonts in
the PDFs, legends outside the axes' data area, long labels wrapped, titles inside the figure,
tick labels that do not overlap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cl_runner import summarize as S
from cl_runner.analyze.plots import generic_name, plot_distances, plot_interpolation, plot_plane
from cl_runner.plotting import LABEL_WIDTH, save_figure, wrap_label
from cl_runner.summarize.plots import (
    curves_figure,
    final_accuracy_figure,
    heatmap_figure,
    short_label,
)
from tests.test_summarize import make_run

LONG = "[1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024]"


@pytest.fixture(scope="module")
def long_sweep(tmp_path_factory) -> Path:
    """2 strategies x 2 learning rates x 2 seeds, grouped by a key with a long value."""
    root = tmp_path_factory.mktemp("plots") / "sweep"
    rng = np.random.default_rng(0)
    for strategy in ("naive", "mcsgd"):
        for lr in (0.01, 0.1):
            for seed in (1, 2):
                m = rng.uniform(0.3, 0.95, (3, 3)).tolist()
                folder = make_run(root, f"{strategy}_{lr}_{seed}", strategy, seed, m,
                                  avg=float(np.mean(m[-1])), lr=lr,
                                  overrides=[f"strategy={strategy}", f"seed={seed}",
                                             f"optimizer.lr={lr}"])
                summary = json.loads((folder / "summary.json").read_text())
                summary["config"]["model"]["hidden_sizes"] = [1024] * 10
                (folder / "summary.json").write_text(json.dumps(summary))
    return root


def summary_of(root: Path, out: Path) -> S.Summary:
    return S.summarize([root], group_by=["benchmark", "strategy", "optimizer.lr",
                                         "model.hidden_sizes"], out=out, plots=False)


def drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def overlaps(a, b) -> bool:
    """Two display-space boxes share more than a pixel."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1


def test_wrap_label():
    assert wrap_label("rotated_mnist / mcsgd / lr=0.1", 20) == "rotated_mnist\nmcsgd / lr=0.1"
    assert wrap_label("short") == "short"
    wrapped = wrap_label("x" * 100, 20, max_lines=3)
    assert wrapped.split("\n") == ["x" * 20, "x" * 20, "x" * 19 + "…"]
    assert short_label(["benchmark", "strategy", "optimizer.lr", "strategy.lr"],
                       ("b", "naive", "0.1", "0.2"), skip=("benchmark",)) == \
        "naive / optimizer.lr=0.1 / strategy.lr=0.2"  # same last part: keys kept whole
    assert short_label(["strategy", "optimizer.lr"], ("er", "0.1")) == "er / lr=0.1"
    assert generic_name("mcsgd/w_hat_12", 12.0) == "mcsgd/w_hat_t"
    assert generic_name("mcsgd/w_hat_1", 12.0) == "mcsgd/w_hat_1"


def test_pdfs_embed_truetype_fonts(long_sweep, tmp_path):
    """PDFs of cl-summarize's and cl-analyze's figures embed TrueType fonts (``/FontFile2``),
    no Type 3 fonts (all figures are saved by the one ``save_figure``)."""
    summary = summary_of(long_sweep, tmp_path / "out")
    frame = pd.DataFrame([(a, b, float(a != b)) for a in ("r/x_1", "r/x_2")
                          for b in ("r/x_1", "r/x_2")], columns=["a", "b", "distance"])
    written = (save_figure(curves_figure(summary, "rotated_mnist", summary.groups),
                           tmp_path / "curves")
               + save_figure(plot_distances(frame, ["r/x_1", "r/x_2"]), tmp_path / "distances"))
    pdfs = [p for p in written if p.suffix == ".pdf"]
    assert len(pdfs) == 2
    for pdf in pdfs:
        data = pdf.read_bytes()
        assert b"/FontFile2" in data, pdf.name
        assert b"/Type3" not in data, pdf.name


def test_legends_outside_the_axes(long_sweep, tmp_path):
    summary = summary_of(long_sweep, tmp_path / "out")
    curves = pd.DataFrame([
        {"comparison": c, "start": "mcsgd/w_hat_1", "end": f"{run}/{kind}_{t}", "t": t,
         "alpha": a, "loss": 1 + a * k, "accuracy": 0.9 - 0.5 * a * k}
        for t in (2, 4) for k, (c, run, kind) in enumerate(
            [("continual", "mcsgd", "w_hat"), ("continual", "naive", "w_hat"),
             ("multitask", "multitask", "w_star"), ("mcsgd", "mcsgd", "w_bar")])
        for a in np.linspace(0, 1, 5)])
    xs, ys = np.meshgrid(np.linspace(-1, 2, 4), np.linspace(-1, 2, 4))
    grid = pd.DataFrame({"x": xs.ravel(), "y": ys.ravel(), "loss": 0.1 + xs.ravel() ** 2})
    points = pd.DataFrame([{"role": r, "solution": s, "x": x, "y": y, "distance_to_plane": d}
                           for r, s, x, y, d in [("w_hat_i", "a/w_hat_1", 0, 0, 0),
                                                 ("w_hat_t", "a/w_hat_2", 1, 0, 0),
                                                 ("w_star_t", "m/w_star_2", 0, 1, 0),
                                                 ("projected", "a/w_bar_2", 1, 1, 2.5)]])
    figures = [curves_figure(summary, "rotated_mnist", summary.groups),
               plot_interpolation(curves, 1, "test"), plot_plane(grid, points, 1, 2)]
    for fig in figures:
        renderer = drawn(fig)
        assert len(fig.legends) == 1
        box = fig.legends[0].get_window_extent(renderer)
        assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)
        for ax in fig.axes:
            assert ax.get_legend() is None
            assert not overlaps(box, ax.get_window_extent(renderer))
    # one legend entry per path, named with _t, for both columns of the interpolation plot
    texts = [t.get_text() for t in figures[1].legends[0].get_texts()]
    assert len(texts) == 4 and "continual: mcsgd/w_hat_1 → mcsgd/w_hat_t" in texts


def test_long_labels_wrapped_titles_inside_ticks_apart(long_sweep, tmp_path):
    summary = summary_of(long_sweep, tmp_path / "out")
    assert all(LONG in S.group_label(summary.group_keys, g.values) for g in summary.groups)
    curves = curves_figure(summary, "rotated_mnist", summary.groups)
    bars = final_accuracy_figure(summary)
    heat = heatmap_figure(summary, summary.groups[0])
    for fig in (curves, bars, heat):
        renderer = drawn(fig)  # everything drawn (titles, labels, legend) inside the figure
        drawn_box = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)
        assert drawn_box.x0 >= -1 and drawn_box.y0 >= -1
        assert drawn_box.x1 <= fig.bbox.x1 + 1 and drawn_box.y1 <= fig.bbox.y1 + 1
    legend_lines = [line for t in curves.legends[0].get_texts()
                    for line in t.get_text().split("\n")]
    assert max(map(len, legend_lines)) <= LABEL_WIDTH
    assert len(legend_lines) > len(summary.groups)  # the long labels were wrapped
    ax = bars.axes[0]
    renderer = drawn(bars)
    ticks = [t.get_window_extent(renderer) for t in ax.get_yticklabels()]
    assert all(not overlaps(a, b) for i, a in enumerate(ticks) for b in ticks[i + 1:])
    assert max(len(line) for t in ax.get_yticklabels()
               for line in t.get_text().split("\n")) <= LABEL_WIDTH
    # one colour per strategy, the same in the curves and the bars
    colours = {g.values[1]: set() for g in summary.groups}
    for g, line in zip(summary.groups, curves.axes[0].get_lines(), strict=True):
        colours[g.values[1]].add(line.get_color())
    assert all(len(c) == 1 for c in colours.values()) and len(set.union(*colours.values())) == 2


def test_distance_tick_labels_readable():
    """81 solutions: tick labels at least 5 points, spaced so that they do not overlap."""
    names = ["mcsgd/init"] + [f"{run}/w_{t}" for run in ("a", "b", "c", "d") for t in range(1, 21)]
    frame = pd.DataFrame([(a, b, 1.0) for a in names for b in names],
                         columns=["a", "b", "distance"])
    fig = plot_distances(frame, names)
    renderer = drawn(fig)
    labels = [t for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert min(t.get_fontsize() for t in labels) >= 5
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert all(not overlaps(a, b) for a, b in zip(boxes, boxes[1:], strict=False))


# ---- issue 34 item 6: stable styles, column width, legends, honest titles -----------------

def strategy_sweep(root: Path, strategies: list[str], seeds=(1,)) -> Path:
    rng = np.random.default_rng(1)
    for strategy in strategies:
        for seed in seeds:
            m = rng.uniform(0.3, 0.95, (3, 3)).tolist()
            make_run(root, f"{strategy}_{seed}", strategy, seed, m, avg=float(np.mean(m[-1])))
    return root


def line_colours(fig) -> list[str]:
    from matplotlib.colors import to_hex
    return [to_hex(line.get_color()) for line in fig.axes[0].get_lines()]


def test_a_strategy_keeps_its_colour_and_marker_whatever_else_is_plotted(tmp_path):
    """naive was one colour in one summary and another in the next (colours by sorted
    position); now each strategy has its own, in the curves and the bars alike."""
    from matplotlib.colors import to_hex

    from cl_runner.plotting import strategy_style

    small = S.summarize([strategy_sweep(tmp_path / "a", ["naive", "mcsgd"])],
                        out=tmp_path / "oa", plots=False)
    large = S.summarize([strategy_sweep(tmp_path / "b", ["er", "ewc", "naive", "zz_new"])],
                        out=tmp_path / "ob", plots=False)
    styles = {}
    for summary in (small, large):
        curves = curves_figure(summary, "rotated_mnist", summary.groups)
        bars = final_accuracy_figure(summary)
        for g, line, bar in zip(summary.groups, curves.axes[0].get_lines(),
                                bars.axes[0].patches, strict=True):
            name = g.values[summary.group_keys.index("strategy")]
            seen = (to_hex(line.get_color()), line.get_marker(), to_hex(bar.get_facecolor()))
            assert styles.setdefault(name, seen) == seen, name  # same in both summaries
            assert seen[0] == seen[2]  # same colour in the bars
            assert (seen[0], seen[1]) == (to_hex(strategy_style(name)[0]),
                                          strategy_style(name)[1])
    assert len({s[:2] for s in styles.values()}) == len(styles)  # told apart
    # a name the table does not know gets a style from its name alone (crc32), in any process
    import subprocess
    import sys
    other = subprocess.run([sys.executable, "-c", "from cl_runner.plotting import strategy_style;"
                            "print(strategy_style('zz_new'))"], capture_output=True, text=True)
    assert other.stdout.strip() == str(strategy_style("zz_new"))


def all_texts(fig):
    from matplotlib.text import Text
    return [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]


def test_column_width_figures_with_fonts_of_8_to_9_pt(tmp_path):
    root = strategy_sweep(tmp_path / "s", ["naive", "mcsgd"], seeds=(1, 2))
    summary = S.summarize([root], out=tmp_path / "o", plots=False)
    for fig in (curves_figure(summary, "rotated_mnist", summary.groups),
                final_accuracy_figure(summary), heatmap_figure(summary, summary.groups[0])):
        assert fig.get_figwidth() == pytest.approx(3.3)
        sizes = {t.get_fontsize() for t in all_texts(fig)}
        assert sizes and min(sizes) >= 8 and max(sizes) <= 9, sizes
    wide = S.summarize([root], out=tmp_path / "w", figure_width=7.0)
    png = next(p for p in wide.files if p.name == "accuracy_curve_rotated_mnist.png")
    from PIL import Image
    with Image.open(png) as image:  # 150 dpi, cropped to the content: close to 7 in
        assert 6.5 * 150 <= image.width <= 7.1 * 150  # + 0.05 in of padding each side
    assert S.parse_args(["x", "figure_width=5"]).figure_width == 5.0


def test_fifteen_groups_legend_below_never_taller_than_the_axes(tmp_path):
    """15 groups made a legend twice the plot's height; now it sits below the axes in
    columns, and the figure grows so the axes are at least as tall as the legend."""
    names = ["naive", "mcsgd", "ewc", "er", "agem", "lwf", "der", "derpp", "icarl",
             "multitask", "stable_sgd", "si", "mas", "gem", "a_new_method_name"]
    summary = S.summarize([strategy_sweep(tmp_path / "s", names)], out=tmp_path / "o",
                          plots=False)
    assert len(summary.groups) == 15
    fig = curves_figure(summary, "rotated_mnist", summary.groups)
    renderer = drawn(fig)
    legend = fig.legends[0].get_window_extent(renderer)
    ax = fig.axes[0].get_window_extent(renderer)
    assert legend.height <= ax.height
    assert not overlaps(legend, ax) and legend.y1 <= ax.y0  # below the axes
    assert fig.legends[0]._ncols >= 2
    assert fig.bbox.contains(legend.x0, legend.y0) and fig.bbox.contains(legend.x1, legend.y1)


def test_titles_claim_a_std_only_over_two_seeds_or_more(tmp_path):
    one = S.summarize([strategy_sweep(tmp_path / "a", ["naive", "mcsgd"])],
                      out=tmp_path / "oa", plots=False)
    two = S.summarize([strategy_sweep(tmp_path / "b", ["naive", "mcsgd"], seeds=(1, 2))],
                      out=tmp_path / "ob", plots=False)
    for summary, claims in ((one, False), (two, True)):
        for fig in (curves_figure(summary, "rotated_mnist", summary.groups),
                    final_accuracy_figure(summary)):
            title = fig._suptitle.get_text()
            assert ("mean ± std over 2 seeds" in title) is claims, title
            assert ("one seed" in title) is not claims, title
