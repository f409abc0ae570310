"""The evaluation's outputs (issues 27 and 28): the scenario decides the headline matrix, the
task-incremental matrix beside it (one forward pass, two masks on class-incremental
benchmarks; the task given to a strategy that declares it elsewhere), the confusion counts at
every task end and the class-incremental metrics computed from them."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from torch import nn

from cl_runner.data.benchmark import Benchmark
from cl_runner.errors import ConfigError
from cl_runner.results import class_metrics
from cl_runner.results.metrics import METRICS, confusion_metrics
from cl_runner.runner_hooks import write_results
from cl_runner.strategies.base import Strategy
from cl_runner.training.evaluate import (
    BLIND,
    GIVEN,
    HEADLINE,
    INFERRED,
    Evaluator,
    plan_passes,
    task_of_class,
)
from cl_runner.training.loop import train_sequence
from tests.conftest import compose_run

# ------------------------------------------------------------------ a hand-built class-IL case

#: per test example (task 1: examples 0-3, task 2: 4-7): label and the model's logits
LABELS = [[0, 1, 0, 1], [2, 3, 2, 3]]
LOGITS = torch.tensor([
    [2.0, 1, 3, 0],  # y 0: all outputs -> 2 (wrong); task 1's {0, 1} -> 0 (right)
    [0.0, 1, 0, 5],  # y 1: -> 3 (wrong); -> 1 (right)
    [4.0, 0, 0, 0],  # y 0: -> 0 (right); -> 0 (right)
    [3.0, 1, 0, 0],  # y 1: -> 0 (wrong); -> 0 (wrong)
    [0.0, 0, 1, 2],  # y 2: -> 3 (wrong); task 2's {2, 3} -> 3 (wrong)
    [5.0, 0, 0, 1],  # y 3: -> 0 (wrong); -> 3 (right)
    [0.0, 0, 3, 1],  # y 2: -> 2 (right); -> 2 (right)
    [0.0, 0, 0, 2],  # y 3: -> 3 (right); -> 3 (right)
])
#: class-IL accuracy per task (1/4, 2/4); task-IL accuracy of the same logits (3/4, 3/4)
CLASS_IL, TASK_IL = [0.25, 0.5], [0.75, 0.75]
#: confusion[true][predicted] of the 8 examples above
CONFUSION = [[1, 0, 1, 0], [1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 0, 1]]


class TinyClassIL(Benchmark):
    """2 tasks x 2 classes, one head over 4 classes, no task id at test time, all outputs
    scored. The stored inputs are example indices (the model looks their logits up)."""

    scenario = "class_incremental"
    input_shape = (1,)
    num_classes = 4

    def __init__(self) -> None:  # no cfg: set by hand
        self.name, self.num_tasks, self.device = "tiny_class_il", 2, torch.device("cpu")
        self.masks = torch.tensor([[True, True, False, False], [False, False, True, True]])

    def train_data(self, task):
        return self.test_data(task)

    def test_data(self, task):
        return torch.arange(4 * (task - 1), 4 * task), torch.tensor(LABELS[task - 1])

    def to_input(self, x):
        return x

    def task_mask(self, task):
        return self.masks[task - 1]


class Lookup(nn.Module):
    """Returns the fixed logits of each example index and counts its forward passes."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(LOGITS.clone())
        self.calls = 0

    def forward(self, idx):
        self.calls += 1
        return self.table[idx]


def test_one_forward_pass_gives_the_class_il_and_the_task_il_accuracy():
    model = Lookup()
    evaluation = Evaluator(TinyClassIL(), None, batch_size=3).evaluate(model, trained=2)
    assert evaluation.accuracy == CLASS_IL
    assert evaluation.matrices == {"task_il": TASK_IL}
    assert model.calls == 4  # 2 test sets x 2 batches of at most 3: no second forward pass
    assert evaluation.confusion == CONFUSION


def test_the_loop_records_and_writes_both_matrices_and_the_confusion_counts(tmp_path):
    bench, model = TinyClassIL(), Lookup()
    result = train_sequence(bench, model, Strategy(None),
                            lambda params, task: torch.optim.SGD(params, lr=0.0),
                            batch_size=4, eval_batch_size=3, epochs_per_task=1,
                            generator=torch.Generator().manual_seed(0))
    assert result.accuracy == [CLASS_IL, CLASS_IL]
    assert result.matrices == {"task_il": [TASK_IL, TASK_IL]}
    assert result.confusion == [CONFUSION, CONFUSION]
    write_results(tmp_path, result, 2)
    task_il = pd.read_csv(tmp_path / "accuracy_matrix_task_il.csv", index_col=0)
    assert task_il.to_numpy().tolist() == [TASK_IL, TASK_IL]
    tidy = pd.read_csv(tmp_path / "confusion.csv")
    assert list(tidy.columns) == ["trained_task", "true_class", "predicted_class", "count"]
    assert len(tidy) == 2 * 8  # the non-zero cells of each task end
    last = tidy[tidy.trained_task == 2]
    rebuilt = [[0] * 4 for _ in range(4)]
    for row in last.itertuples():
        rebuilt[row.true_class][row.predicted_class] = row.count
    assert rebuilt == CONFUSION


def test_task_of_class_comes_from_the_task_masks():
    assert task_of_class(TinyClassIL()) == [0, 0, 1, 1]


# ------------------------------------------------------------------ the scenario decides


@pytest.mark.parametrize("scenario", ["domain_incremental", "class_incremental",
                                      "task_incremental"])
@pytest.mark.parametrize("task_given", [False, True])
@pytest.mark.parametrize("infers", [False, True])
def test_only_a_task_incremental_benchmark_has_a_task_given_headline(scenario, task_given,
                                                                     infers):
    passes = plan_passes(scenario, task_given, infers)
    heads = [p for p in passes if p.name == HEADLINE]
    assert len(heads) == 1
    if scenario == "task_incremental":
        assert heads[0].knows == GIVEN
    else:
        assert heads[0].knows == (INFERRED if infers else BLIND)
        assert [p.name for p in passes if p.knows == GIVEN] == (["task_il"] if task_given else [])


class DomainTiny(Benchmark):
    """2 tasks over the same 2 outputs; task 1's test labels are all 0, task 2's all 1."""

    input_shape = (1,)
    num_classes = 2

    def __init__(self) -> None:
        self.name, self.num_tasks, self.device = "domain_tiny", 2, torch.device("cpu")

    def train_data(self, task):
        return self.test_data(task)

    def test_data(self, task):
        return torch.zeros(6, 1), torch.full((6,), task - 1)

    def to_input(self, x):
        return x


class TaskOracle(Strategy):
    """Tries to make a task-given matrix the headline: declares a task-given evaluation and,
    as SupSup selects a task's mask, keeps the task ``eval_task`` was told (or ``predict``'s
    task) and then classifies perfectly; told nothing, it answers class 1. On the code before
    the scenario decided the headline, its headline was the task-given [1.0, 1.0]."""

    task_given_evaluation = True

    def __init__(self) -> None:
        super().__init__(None)
        self.told: list[int] = []
        self.selected: int | None = None

    def eval_task(self, model, task):
        self.told.append(task)
        self.selected = task

    def predict(self, model, inputs, task):
        told = task if task is not None else self.selected
        scores = torch.zeros(len(inputs), 2)
        scores[:, 1 if told is None else told - 1] = 1.0
        return scores


def test_a_task_given_matrix_never_becomes_the_headline_outside_task_incremental():
    strategy = TaskOracle()
    result = train_sequence(DomainTiny(), nn.Linear(1, 2), strategy,
                            lambda params, task: torch.optim.SGD(params, lr=0.0),
                            batch_size=6, eval_batch_size=4, epochs_per_task=1,
                            generator=torch.Generator().manual_seed(0))
    # headline: no task id for the test set scored (at most the one the task-IL pass left,
    # task 2, for all): task 1 (labels 0) wrong, task 2 right
    assert result.initial_accuracy == [0.0, 1.0]
    assert result.accuracy == [[0.0, 1.0], [0.0, 1.0]]
    # the task given: perfect, written beside the headline as the task-incremental matrix
    assert result.matrices == {"task_il": [[1.0, 1.0], [1.0, 1.0]]}
    assert strategy.told == [1, 2, 1, 2]  # only in the task-IL passes of the 2 task ends


def test_a_strategy_cannot_write_a_matrix_of_its_own():
    with pytest.raises(TypeError, match="one evaluation"):
        type("OwnMatrices", (Strategy,), {"accuracy_matrices": lambda self: {"x": [[1.0]]}})


@pytest.mark.parametrize("strategy", ["supsup", "impresslearn"])
@pytest.mark.parametrize("benchmark", ["rotated_mnist", "permuted_mnist"])
def test_supermasks_without_task_inference_are_refused_where_no_task_id_is_given(strategy,
                                                                                 benchmark):
    with pytest.raises(ConfigError, match="task_inference=false"):
        compose_run([f"strategy={strategy}", f"benchmark={benchmark}",
                     "strategy.task_inference=false"])
    compose_run([f"strategy={strategy}", "benchmark=split_mnist", "benchmark.scenario=task",
                 "strategy.task_inference=false"])  # the task id given: the headline


# ------------------------------------------------------------------ class-IL metrics

#: 2 tasks x 2 classes (classes 0, 1: task 1; 2, 3: task 2), 4 test examples per class
OWNER = [0, 0, 1, 1]
AFTER_1 = [[3, 1, 0, 0],  # class 0: 3 right
           [2, 2, 0, 0],  # class 1: 2 right
           [4, 0, 0, 0],  # task 2's classes, not seen yet: ignored by every metric
           [0, 4, 0, 0]]
AFTER_2 = [[1, 0, 3, 0],  # class 0: 1 right, 3 to task 2's class 2
           [0, 0, 2, 2],  # class 1: 0 right, 4 to task 2's classes
           [0, 0, 4, 0],  # class 2: 4 right
           [0, 0, 1, 3]]  # class 3: 3 right


def test_class_il_metrics_against_hand_computed_confusion_counts():
    counts = [AFTER_1, AFTER_2]
    # seen so far: after task 1 (3 + 2) / 8; after task 2 (1 + 0 + 4 + 3) / 16
    assert class_metrics.seen_accuracy_curve(counts, OWNER) == [0.625, 0.5]
    assert class_metrics.average_incremental_accuracy(counts, OWNER) == pytest.approx(0.5625)
    old = class_metrics.old_class_accuracy_curve(counts, OWNER)
    assert math.isnan(old[0]) and old[1] == 1 / 8
    assert class_metrics.new_class_accuracy_curve(counts, OWNER) == [0.625, 7 / 8]
    # predictions to the latest task's classes among the seen examples: 8/8, then 15/16
    assert class_metrics.task_recency_bias_curve(counts, OWNER) == [1.0, 15 / 16]
    summary = confusion_metrics(counts, OWNER)
    assert summary["average_incremental_accuracy"] == pytest.approx(0.5625)
    assert summary["old_class_accuracy"] == 1 / 8 and summary["new_class_accuracy"] == 7 / 8
    assert summary["task_recency_bias"] == 15 / 16
    assert summary["old_class_accuracy_per_task"][1] == 1 / 8
    for name in ("average_incremental_accuracy", "old_class_accuracy", "new_class_accuracy",
                 "task_recency_bias", "task_il_average_accuracy", "task_il_forgetting"):
        assert name in METRICS  # declared once: summary.json, cl-summarize, loggers, table
    assert confusion_metrics([], OWNER) == {}


def test_confusion_counts_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="confusions must be"):
        class_metrics.seen_accuracy_curve([AFTER_1], [0, 1])


# ------------------------------------------------------------------ cl-summarize


def test_summarize_reads_an_old_supsup_folder_with_the_task_inferred_headline(tmp_path):
    """A SupSup run on Rotated MNIST written before the scenario decided the headline: its
    summary.json says the task-given accuracy is ``average_accuracy``. cl-summarize reads it
    as a run written now would say it (never changing the file)."""
    from cl_runner import summarize as S
    from tests.test_summarize import make_run

    folder = make_run(tmp_path / "runs", "old_supsup", "supsup", 1,
                      [[0.9, 0.5], [0.9, 0.8]], avg=0.85, forgetting=0.0, bwt=0.0, learning=0.85)
    summary = json.loads((folder / "summary.json").read_text())
    summary.update(task_inferred={"average_accuracy": 0.6, "forgetting": 0.2,
                                  "backward_transfer": -0.2, "learning_accuracy": 0.7},
                   task_inferred_average_accuracy=0.6, task_inferred_forgetting=0.2)
    (folder / "summary.json").write_text(json.dumps(summary))
    before = (folder / "summary.json").read_bytes()
    pd.DataFrame([[0.8, None], [0.6, 0.6]], columns=["task_1", "task_2"],
                 index=pd.Index(["after_task_1", "after_task_2"], name="train_task")
                 ).to_csv(folder / "accuracy_matrix_task_inferred.csv")
    result = S.summarize([tmp_path / "runs"], metrics=["average_accuracy", "forgetting",
                                                       "task_il_average_accuracy"],
                         out=tmp_path / "out", plots=False)
    table = result.table.set_index("metric")["mean"]
    assert table["average_accuracy"] == pytest.approx(0.6)
    assert table["forgetting"] == pytest.approx(0.2)
    assert table["task_il_average_accuracy"] == pytest.approx(0.85)
    assert result.groups[0].matrix_mean[1].tolist() == [0.6, 0.6]
    assert (folder / "summary.json").read_bytes() == before


def test_summarize_plots_the_final_confusion_matrix(tmp_path):
    from cl_runner import summarize as S
    from cl_runner.results.writer import confusion_frame
    from cl_runner.summarize.confusion import read_confusion
    from tests.test_summarize import make_run

    folder = make_run(tmp_path / "runs", "class_il", "naive", 1, [[0.9, 0.0], [0.1, 0.9]],
                      avg=0.5)
    confusion_frame([AFTER_1, AFTER_2]).to_csv(folder / "confusion.csv", index=False)
    assert read_confusion(folder / "confusion.csv", 4).tolist() == [AFTER_1, AFTER_2]
    result = S.summarize([tmp_path / "runs"], out=tmp_path / "out")
    pngs = [p for p in result.files if p.name.startswith("confusion_") and p.suffix == ".png"]
    assert len(pngs) == 1
    from PIL import Image

    width_inches = Image.open(pngs[0]).size[0] / 150  # saved at 150 dpi, cropped to content
    assert 2.5 < width_inches < 4.0


# ------------------------------------------------------------------ a real class-IL run


@pytest.mark.usefixtures("mnist_small_test_set")
def test_a_class_il_run_writes_both_matrices_the_confusion_counts_and_their_metrics(
        tmp_path, mnist_root):
    from cl_runner.experiment import run_experiment
    from cl_runner.results.run_folder import clear_results

    run = compose_run(["benchmark=split_mnist", "benchmark.scenario=class",
                       "benchmark.num_tasks=2", "benchmark.train_samples_per_task=300",
                       "progress=false", "hardware.num_threads=1", f"data.root={mnist_root}"])
    summary = run_experiment(run, tmp_path)
    headline = pd.read_csv(tmp_path / "accuracy_matrix.csv", index_col=0).to_numpy()
    task_il = pd.read_csv(tmp_path / "accuracy_matrix_task_il.csv", index_col=0).to_numpy()
    assert (task_il >= headline - 1e-12).all()  # masking to the task's classes never hurts
    assert task_il[-1, 0] > headline[-1, 0] + 0.3  # naive class-IL forgets task 1's classes
    tidy = pd.read_csv(tmp_path / "confusion.csv")
    counted = tidy.groupby("trained_task")["count"].sum()  # every test example of both
    assert counted.index.tolist() == [1, 2] and counted[1] == counted[2] > 0  # tasks, each time
    assert summary["task_il_average_accuracy"] == pytest.approx(task_il[-1].mean())
    assert 0 <= summary["average_incremental_accuracy"] <= 1
    assert summary["task_recency_bias"] > 0.5  # naive: most predictions go to task 2's digits
    assert len(summary["old_class_accuracy_per_task"]) == 2
    clear_results(tmp_path)  # force / resume=false: nothing of the run outlives it
    assert not (tmp_path / "confusion.csv").exists()
    assert not (tmp_path / "accuracy_matrix_task_il.csv").exists()
