"""cl-summarize on hand-made run folders with known numbers (no training here; the runner's own
sweeps are summarized in test_sweep.py)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cl_runner import summarize as S


def config(strategy: str, seed: int, lr: float = 0.01, num_tasks: int = 2) -> dict:
    return {
        "seed": seed, "data": {"root": "/data", "download": True},
        "benchmark": {"name": "rotated_mnist", "num_tasks": num_tasks, "batch_size": 10},
        "model": {"name": "mlp", "hidden_sizes": [256, 256], "dropout": 0.0},
        "strategy": {"name": strategy},
        "optimizer": {"name": "sgd", "lr": lr, "momentum": 0.8},
        "hardware": {"name": "cpu", "device": "cpu", "num_threads": 1},
        "progress": False, "force": False,
    }


def make_run(root: Path, name: str, strategy: str, seed: int, matrix, *, avg: float,
             forgetting: float | None = 0.1, bwt: float = -0.1, learning: float = 0.8,
             wall: float = 10.0, lr: float = 0.01, overrides: list[str] | None = None,
             status: str = "complete") -> Path:
    """A run folder as cl-run writes it, with the numbers given."""
    folder = root / name
    (folder / ".hydra").mkdir(parents=True)
    cfg = config(strategy, seed, lr, num_tasks=len(matrix[0]))
    summary = {"status": status, "strategy": strategy, "benchmark": "rotated_mnist",
               "seed": seed, "num_tasks": len(matrix[0]), "average_accuracy": avg,
               "forgetting": forgetting, "backward_transfer": bwt, "learning_accuracy": learning,
               "forward_transfer": None, "wall_time_seconds": wall, "config": cfg}
    (folder / "summary.json").write_text(json.dumps(summary))
    t = len(matrix[0])
    pd.DataFrame(matrix, columns=[f"task_{j}" for j in range(1, t + 1)],
                 index=pd.Index([f"after_task_{i}" for i in range(1, len(matrix) + 1)],
                                name="train_task")).to_csv(folder / "accuracy_matrix.csv")
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    ov = overrides if overrides is not None else [f"strategy={strategy}", f"seed={seed}",
                                                  "benchmark.num_tasks=2"]
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(ov))
    return folder


# seeds 1..3 of naive, seeds 1..2 of mcsgd; hand-computed aggregates below
NAIVE = [  # (seed, matrix, avg, forgetting, wall)
    (1, [[0.9, 0.1], [0.5, 0.7]], 0.50, 0.40, 10.0),
    (2, [[0.8, 0.2], [0.6, 0.6]], 0.60, 0.20, 20.0),
    (3, [[0.7, 0.3], [0.7, 0.5]], 0.70, 0.00, 36.0),
]
MCSGD = [
    (1, [[0.9, 0.2], [0.8, 0.8]], 0.80, 0.10, 30.0),
    (2, [[0.9, 0.4], [0.9, 0.9]], 0.90, 0.00, 40.0),
]


@pytest.fixture()
def sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    for i, (seed, m, avg, fgt, wall) in enumerate(NAIVE):
        make_run(root, f"{i}_naive_seed{seed}", "naive", seed, m, avg=avg, forgetting=fgt, wall=wall)
    for i, (seed, m, avg, fgt, wall) in enumerate(MCSGD, start=3):
        make_run(root, f"{i}_mcsgd_seed{seed}", "mcsgd", seed, m, avg=avg, forgetting=fgt, wall=wall)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def stat(summary: S.Summary, strategy: str, metric: str) -> pd.Series:
    t = summary.table
    row = t[(t["strategy"] == strategy) & (t["metric"] == metric)]
    assert len(row) == 1
    return row.iloc[0]


def test_means_stds_and_seed_counts_equal_hand_computed(sweep, tmp_path):
    out = tmp_path / "out"
    summary = S.summarize([sweep], out=out, plots=False)
    assert summary.group_keys == ["benchmark", "strategy"]
    assert [g.values for g in summary.groups] == [("rotated_mnist", "mcsgd"),
                                                  ("rotated_mnist", "naive")]
    naive_acc = stat(summary, "naive", "average_accuracy")
    assert naive_acc["mean"] == pytest.approx(0.60)
    # sample std (ddof=1) of 0.5, 0.6, 0.7: sqrt((0.01 + 0 + 0.01) / 2) = 0.1
    assert naive_acc["std"] == pytest.approx(0.1)
    assert naive_acc["n_seeds"] == 3 and naive_acc["seeds"] == "1;2;3"
    naive_fgt = stat(summary, "naive", "forgetting")
    assert naive_fgt["mean"] == pytest.approx(0.2) and naive_fgt["std"] == pytest.approx(0.2)
    naive_wall = stat(summary, "naive", "wall_time_seconds")
    # mean of 10, 20, 36 = 22; deviations -12, -2, 14: sqrt((144 + 4 + 196) / 2) = sqrt(172)
    assert naive_wall["mean"] == pytest.approx(22.0)
    assert naive_wall["std"] == pytest.approx(math.sqrt(172))
    assert naive_wall["unit"] == "seconds"
    mc_acc = stat(summary, "mcsgd", "average_accuracy")
    assert mc_acc["mean"] == pytest.approx(0.85)
    assert mc_acc["std"] == pytest.approx(math.sqrt(0.005))  # 0.0707: two seeds, ddof=1
    assert mc_acc["n_seeds"] == 2

    # summary.csv is the tidy table: 2 groups x 5 default metrics
    csv = pd.read_csv(out / "summary.csv")
    assert len(csv) == 10 and set(csv["metric"]) == set(S.DEFAULT_METRICS)
    assert csv.loc[(csv.strategy == "naive") & (csv.metric == "average_accuracy"),
                   "std"].item() == pytest.approx(0.1)

    # aggregated accuracy matrix: element-wise mean and ddof=1 std over the 3 naive seeds
    mean = pd.read_csv(out / "matrices" / "rotated_mnist__naive_mean.csv", index_col=0)
    std = pd.read_csv(out / "matrices" / "rotated_mnist__naive_std.csv", index_col=0)
    assert list(mean.index) == ["after_task_1", "after_task_2"]
    assert list(mean.columns) == ["task_1", "task_2"]
    np.testing.assert_allclose(mean.to_numpy(), [[0.8, 0.2], [0.6, 0.6]])
    np.testing.assert_allclose(std.to_numpy(), [[0.1, 0.1], [0.1, 0.1]])
    # A_t curve: A_1 = a[1,1], A_2 = mean(a[2,1..2]); per seed (0.9, 0.6), (0.8, 0.6), (0.7, 0.6)
    naive = next(g for g in summary.groups if g.values[1] == "naive")
    np.testing.assert_allclose(naive.curve_mean, [0.8, 0.6])
    np.testing.assert_allclose(naive.curve_std, [0.1, 0.0], atol=1e-12)


def test_table_formats_percent_fraction_and_na(sweep, tmp_path):
    make_run(sweep, "9_er_seed1", "er", 1, [[0.5, 0.5], [0.5, 0.5]], avg=0.5, forgetting=None)
    summary = S.summarize([sweep], out=tmp_path / "out", plots=False)
    wide = S.wide_table(summary).set_index("strategy")
    assert wide.loc["naive", "avg acc (%)"] == "60.00 ± 10.00"   # accuracy in percent
    assert wide.loc["naive", "forgetting"] == "0.200 ± 0.200"    # forgetting as a fraction
    assert wide.loc["naive", "wall time (s)"] == "22.0 ± 13.1"
    assert wide.loc["er", "avg acc (%)"] == "50.00 ± n/a"        # one seed: std undefined
    assert wide.loc["er", "forgetting"] == "n/a"                 # null in summary.json
    assert wide.loc["er", "seeds"] == 1
    assert S.format_cell(0.5, math.nan, "average_accuracy", latex=True) == "$50.00$ $\\pm$ n/a"
    assert S.format_cell(-0.25, 0.05, "forgetting", latex=True) == "$-0.250 \\pm 0.050$"


def test_grouping_by_a_swept_key(tmp_path):
    root = tmp_path / "lr_sweep"
    m = [[0.9, 0.1], [0.5, 0.7]]
    for i, (lr, seed, avg) in enumerate([(0.01, 1, 0.4), (0.01, 2, 0.6), (0.1, 1, 0.7),
                                         (0.1, 2, 0.9)]):
        make_run(root, f"{i}", "naive", seed, m, avg=avg, lr=lr,
                 overrides=["strategy=naive", f"seed={seed}", f"optimizer.lr={lr}",
                            "benchmark.num_tasks=2", "hydra.launcher.n_jobs=2"])
    records = [S.read_run(p) for p in S.find_run_folders([root])]
    # swept: optimizer.lr (two values); not: the seed, fixed overrides, hydra.* keys
    assert S.default_group_keys(records) == ["benchmark", "strategy", "optimizer.lr"]
    summary = S.summarize([root], out=tmp_path / "out", plots=False)
    acc = summary.table[summary.table.metric == "average_accuracy"].set_index("optimizer.lr")
    assert acc.loc["0.01", "mean"] == pytest.approx(0.5) and acc.loc["0.1", "mean"] == pytest.approx(0.8)
    assert acc.loc["0.1", "std"] == pytest.approx(math.sqrt(0.02))
    assert list(acc["n_seeds"]) == [2, 2]
    # explicit grouping by strategy alone: the runs of two learning rates are not one
    # experiment, so the learning rate is added (and said): no run dropped as a "duplicate"
    merged = S.summarize([root], group_by=["strategy"], out=tmp_path / "out2", plots=False)
    assert merged.group_keys == ["strategy", "optimizer.lr"]
    assert [g.values for g in merged.groups] == [("naive", "0.01"), ("naive", "0.1")]
    assert [len(g.runs) for g in merged.groups] == [2, 2] and not merged.excluded
    assert merged.problems == ["grouped by optimizer.lr too: runs of a group differed in it"]
    # a real duplicate (same experiment and seed, another thread count) is listed, counted once
    make_run(root, "4", "naive", 1, m, avg=0.4, lr=0.01,
             overrides=["strategy=naive", "seed=1", "optimizer.lr=0.01", "hardware.num_threads=4"])
    again = S.summarize([root], out=tmp_path / "out3", plots=False)
    assert [len(g.runs) for g in again.groups] == [2, 2]
    assert [r.status for r in again.excluded] == ["duplicate"]


def test_incomplete_failed_and_corrupt_runs_are_reported_not_averaged(sweep, tmp_path, capsys):
    m = [[0.9, 0.1], [0.5, 0.7]]
    running = make_run(sweep, "5_naive_seed4", "naive", 4, [m[0]], avg=0.99, status="running")
    failed = make_run(sweep, "6_naive_seed5", "naive", 5, m, avg=0.99, status="failed")
    corrupt = make_run(sweep, "7_naive_seed6", "naive", 6, m, avg=0.99)
    (corrupt / "summary.json").write_text('{"status": "complete", "average_acc')
    bad_matrix = make_run(sweep, "8_naive_seed7", "naive", 7, m, avg=0.99)
    (bad_matrix / "accuracy_matrix.csv").write_text("train_task,task_1,task_2\nafter_task_1,abc,0.1\n")
    bad_value = make_run(sweep, "9_naive_seed8", "naive", 8, m, avg=0.99)
    data = json.loads((bad_value / "summary.json").read_text())
    data["forgetting"] = "lots"
    (bad_value / "summary.json").write_text(json.dumps(data))
    never = sweep / "10_naive_seed9"
    (never / ".hydra").mkdir(parents=True)
    (never / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config("naive", 9)))

    out = tmp_path / "out"
    code = S.main([str(sweep), f"out={out}", "plots=false"])
    assert code == 0
    printed = capsys.readouterr().out
    summary = S.summarize([sweep], out=out, plots=False)
    # the table is unchanged: same groups, same naive numbers from seeds 1..3 only
    assert stat(summary, "naive", "average_accuracy")["mean"] == pytest.approx(0.60)
    assert stat(summary, "naive", "average_accuracy")["n_seeds"] == 3
    reasons = {r.path.name: (r.status, r.reason) for r in summary.excluded}
    assert reasons[running.name][0] == "incomplete" and "1 of 2 tasks" in reasons[running.name][1]
    assert reasons[failed.name][0] == "failed"
    assert reasons[corrupt.name][0] == "corrupt"
    assert "summary.json" in reasons[corrupt.name][1] and "malformed JSON" in reasons[corrupt.name][1]
    assert reasons[bad_matrix.name][0] == "corrupt"
    assert str(bad_matrix / "accuracy_matrix.csv") in reasons[bad_matrix.name][1]
    assert reasons[bad_value.name] == ("corrupt", f"{bad_value / 'summary.json'}: 'forgetting': "
                                                  "'lots' is not a number")
    assert reasons[never.name][0] == "incomplete" and "no summary.json" in reasons[never.name][1]
    assert len(reasons) == 6
    # reported everywhere: terminal, runs.csv, summary.md
    for name in reasons:
        assert name in printed
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 11 and (runs.status == "complete").sum() == 5
    md = (out / "summary.md").read_text()
    assert "Runs not included (6: 2 incomplete, 1 failed, 3 corrupt)" in md and "malformed JSON" in md


def table_rows_md(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def test_markdown_and_latex_parse(sweep, tmp_path):
    out = tmp_path / "out"
    summary = S.summarize([sweep], out=out, plots=False)
    rows = table_rows_md((out / "summary.md").read_text())
    header, sep, body = rows[0], rows[1], rows[2:]
    assert header == ["benchmark", "strategy", "seeds", "avg acc (%)", "forgetting", "BWT",
                      "learning acc (%)", "wall time (s)"]
    assert all(set(c) <= set("-:") for c in sep) and len(sep) == len(header)
    assert len(body) == len(summary.groups) == 2
    assert all(len(r) == len(header) for r in body)
    assert body[1][:4] == ["rotated_mnist", "naive", "3", "60.00 ± 10.00"]

    tex = (out / "summary.tex").read_text()
    check_latex_table(tex, rows=2)
    lines = tex.splitlines()
    body = lines[lines.index("\\midrule") + 1:lines.index("\\bottomrule")]
    cells = body[1].removesuffix(" \\\\").split(" & ")
    # display names; the constant benchmark left to the caption; n per row (2 and 3 seeds)
    assert cells[:4] == ["Naive", "3", "$60.00$", "${}\\pm{}10.00$"]
    assert cells[4:6] == ["$0.200$", "${}\\pm{}0.200$"]  # forgetting as a fraction
    assert cells[6:8] == ["$-0.100$", ""]  # the same BWT for every seed: no std
    mcsgd = body[0].removesuffix(" \\\\").split(" & ")
    assert mcsgd[:3] == ["MC-SGD", "2", "$\\mathbf{85.00}$"]  # the best accuracy
    assert mcsgd[4] == "$\\mathbf{0.050}$"  # the lowest forgetting is the best
    assert "\\caption{Rotated MNIST. Mean $\\pm$ sample std (ddof=1) over the $n$ seeds" in tex
    assert "rotated" not in tex and "mcsgd" not in tex


def check_latex_table(tex: str, rows: int) -> None:
    """A booktabs table float whose every row has as many cells as the column spec."""
    lines = tex.splitlines()
    assert lines[0] == "\\begin{table}" and lines[-1] == "\\end{table}"
    begin = next(ln for ln in lines if ln.startswith("\\begin{tabular}"))
    spec = begin[len("\\begin{tabular}{"):-1].replace("@{}", "")
    i_top, i_mid, i_bot = (lines.index(x) for x in ("\\toprule", "\\midrule", "\\bottomrule"))
    assert i_top < i_mid < i_bot
    head, body = lines[i_top + 1:i_mid], lines[i_mid + 1:i_bot]
    assert len(head) == 1 and len(body) == rows
    width = sum(int(m) for m in re.findall(r"\\multicolumn\{(\d+)\}", head[0]))
    assert head[0].count(" & ") + 1 + width - head[0].count("\\multicolumn") == len(spec)
    for line in body:
        assert line.endswith("\\\\") and line.count(" & ") + 1 == len(spec)


def test_the_latex_table_compiles_with_pdflatex(sweep, tmp_path):
    """summary.tex inside a minimal article with booktabs compiles (skipped without
    pdflatex: Debian's texlive-latex-recommended has it and booktabs)."""
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (apt-get install texlive-latex-recommended)")
    out = tmp_path / "out"
    S.summarize([sweep], out=out, plots=False)
    doc = tmp_path / "paper.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                   f"\\input{{{out / 'summary.tex'}}}\n\\end{{document}}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                           doc.name], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 1000
    assert "Undefined" not in proc.stdout and "Missing" not in proc.stdout


def test_metric_choice_and_plots(sweep, tmp_path):
    out = tmp_path / "out"
    summary = S.summarize([sweep], metrics=["average_accuracy", "forgetting"], out=out)
    assert set(summary.table.metric) == {"average_accuracy", "forgetting"}
    names = {p.name for p in (out / "plots").iterdir()}
    for stem in ("accuracy_curve_rotated_mnist", "final_accuracy",
                 "heatmap_rotated_mnist__naive", "heatmap_rotated_mnist__mcsgd"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    png = (out / "plots" / "final_accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (out / "plots" / "final_accuracy.pdf").read_bytes()[:5] == b"%PDF-"
    with pytest.raises(S.SummarizeError, match="unknown metric"):
        S.summarize([sweep], metrics=["accuracy"], out=out, plots=False)


def test_command_line_options(sweep, tmp_path, capsys):
    opts = S.parse_args([str(sweep), "group_by=[strategy,optimizer.lr]", "format=latex",
                         "plots=false", f"out={tmp_path}"])
    assert opts.paths == [str(sweep)] and opts.group_by == ["strategy", "optimizer.lr"]
    assert opts.format == S.TableFormat.latex and opts.plots is False
    with pytest.raises(S.SummarizeError, match="unknown option 'colour'"):
        S.parse_args([str(sweep), "colour=red"])
    with pytest.raises(S.SummarizeError, match="plots"):
        S.parse_args([str(sweep), "plots=maybe"])
    assert S.main([str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert S.main([str(sweep), "format=markdown", f"out={tmp_path / 'o'}", "plots=false"]) == 0
    assert "| rotated_mnist | naive | 3 | 60.00 ± 10.00 |" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert S.main([str(empty)]) == 2


def test_runs_differing_in_12_keys_summarize_without_error_and_drop_no_run(tmp_path):
    """Issue 34: single runs of the README examples differ in 12 keys, hardware ones among
    them: the summary grouped by all of them, built a file name longer than 255 bytes and
    crashed (Errno 36); with group_by=[benchmark,strategy] runs of another task count were
    dropped as duplicates. Result-neutral keys are not grouped by, the file names stay short,
    and every complete run is in a group."""
    root = tmp_path / "runs"
    neutral = {"hardware.num_threads": [1, 2], "hardware.device": ["cpu", "cuda"],
               "progress": [True, False], "eval.every_steps": [None, 100],
               "data.root": ["/a/very/long/data/root/" + "x" * 40, "/data"]}
    relevant = {"benchmark.num_tasks": [2, 3], "optimizer.lr": [0.01, 0.05],
                "optimizer.momentum": [0.0, 0.8], "model.dropout": [0.0, 0.25],
                "benchmark.batch_size": [10, 64], "model.hidden_sizes": [[256, 256], [100, 100]],
                "strategy.lmc_lr_long_named_key_" + "y" * 30: [0.1, 0.2]}
    assert len(neutral) + len(relevant) == 12
    runs = []
    for i in range(4):  # run i takes value i % 2 of some keys, (i // 2) % 2 of others
        pick = {k: v[(i + j) % 2 if j % 2 else (i // 2) % 2]
                for j, (k, v) in enumerate({**neutral, **relevant}.items())}
        tasks = pick["benchmark.num_tasks"]
        matrix = np.tril(np.full((tasks, tasks), 0.5 + 0.05 * i)).tolist()
        folder = make_run(root, f"run{i}", "naive", 1, matrix, avg=0.5 + 0.05 * i,
                          overrides=[f"{k}={v}" for k, v in pick.items()])
        data = json.loads((folder / "summary.json").read_text())
        for key, value in pick.items():
            node = data["config"]
            *path, last = key.split(".")
            for part in path:
                node = node.setdefault(part, {})
            node[last] = value
        (folder / "summary.json").write_text(json.dumps(data))
        runs.append(folder)
    for group_by in (None, ["benchmark", "strategy"]):
        summary = S.summarize([root], group_by=group_by, out=tmp_path / f"out{group_by is None}",
                              plots=False)  # the heatmaps take the matrices' names (slug)
        assert not summary.excluded  # nothing dropped, nothing a "duplicate"
        assert sorted(str(r.path) for g in summary.groups for r in g.runs) == \
            sorted(str(p) for p in runs)
        assert "benchmark.num_tasks" in summary.group_keys
        assert not [k for k in summary.group_keys if k.split(".")[0] in
                    ("hardware", "progress", "eval", "data")]
        assert all(len(f.name.encode()) <= 255 for f in summary.files)
        assert len(list((tmp_path / f"out{group_by is None}" / "matrices").iterdir())) == 8
        assert {len({r.get("num_tasks") for r in g.runs}) for g in summary.groups} == {1}


@pytest.mark.parametrize("wide_keys", [False, True])
def test_off_a_terminal_the_table_shows_every_number(sweep, tmp_path, capsys, monkeypatch,
                                                     wide_keys):
    """Issue 34: piped, the table was cut at 200 columns with numbers truncated
    (``88.63 ± n...``), COLUMNS=300 or not. Every cell is now printed whole: metric columns
    stacked (or, with grouping columns too wide for one metric, a long table)."""
    monkeypatch.setenv("COLUMNS", "300")
    if wide_keys:  # a swept key with a long value: the grouping columns alone are too wide
        for i, folder in enumerate(sorted(p for p in sweep.iterdir() if p.is_dir())):
            data = json.loads((folder / "summary.json").read_text())
            data["config"]["model"]["note"] = ("a-very-long-model-description-" * 6) + str(i % 2)
            (folder / "summary.json").write_text(json.dumps(data))
    metrics = [m for m in S.METRICS if m not in ("task_cost_floats", "total_cost_floats")]
    argv = [str(sweep), f"out={tmp_path / 'out'}", "plots=false", f"metrics=[{','.join(metrics)}]"]
    assert S.main(argv) == 0
    out = capsys.readouterr().out
    assert "…" not in out and "..." not in out
    assert max(len(line) for line in out.splitlines()) <= 200
    summary = S.summarize([sweep], metrics=metrics, out=tmp_path / "again", plots=False)
    frame = S.wide_table(summary)
    assert len(frame.columns) > 12
    for column in frame.columns[len(summary.group_keys) + 1:]:
        for cell in frame[column]:
            assert str(cell) in out, (column, cell)
