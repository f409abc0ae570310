"""WA (Zhao et al. 2020) and BiC (Wu et al. 2019) against hand computations: lambda = n/(n+m),
the distillation loss on the old classes, WA's gamma and aligned weights, its weight clipping
in training, BiC's validation split, corrected logits, which task's correction applies where
(evaluation: the newest task's only; distillation targets: the previous task's, on the
teacher), its bias phase through the loop's phase runner, and interruption and resume."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
import torch.nn.functional as F

from cl_runner import dispatch
from cl_runner import resume as resume_mod
from cl_runner.errors import ConfigError
from cl_runner.experiment import run_experiment
from cl_runner.strategies.bias_schemas import BiCConfig, WAConfig
from cl_runner.strategies.bic import BiC, apply_correction
from cl_runner.strategies.exemplar_kd import UNSEEN_MARGIN, kd_lambda
from cl_runner.strategies.wa import WA, align_weights
from cl_runner.training.batch import Batch
from cl_runner.training.hooks import PhaseRunner, RunnerHook
from cl_runner.training.loop import train_sequence
from tests.conftest import compose_cfg, compose_run, run_crashing_after_task
from tests.test_icarl import FeatureNet, ctx, run_task
from tests.test_resume import result_bytes

CPU = torch.device("cpu")


def set_head(model, weight, bias) -> None:
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor(weight))
        model.head.bias.copy_(torch.tensor(bias))


# ------------------------------------------------------------------ the shared baseline


def test_lambda_is_old_over_all_classes_seen():
    assert kd_lambda(2, 2) == 0.5  # Split MNIST, task 2
    assert kd_lambda(8, 2) == 0.8  # task 5
    assert kd_lambda(90, 10) == 0.9  # CIFAR-100 10 x 10, task 10
    assert kd_lambda(0, 2) == 0.0  # task 1: cross-entropy alone


def test_loss_is_lambda_distillation_plus_weighted_cross_entropy():
    """Task 1 saw classes 0, 1; task 2 brings class 2; unit 3 is never seen. For a batch (x_a
    of class 2, exemplar x_b of class 0): lambda = 2/3, L_c the cross-entropy over units 0..2,
    L_d = -sum_k softmax(t/2)_k log softmax(s/2)_k over units 0, 1 with t the task-1 model's
    logits. Written out by hand below."""
    model = FeatureNet(4)
    wa = WA(WAConfig(memory_size=4))
    run_task(wa, ctx(1, model, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), [0, 1], 4))
    set_head(model, [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5], [3.0, 3.0]], [0.0, 0.5, 0.0, 1.0])
    c2 = ctx(2, model, torch.tensor([[0.6, 0.8]]), [2], 4)
    wa.before_task(c2)  # the teacher: the model as it is now
    assert wa.task_data(c2)[1].tolist() == [2, 0, 1]
    set_head(model, [[0.5, -1.0], [2.0, 0.0], [1.0, 1.0], [-7.0, 9.0]], [0.25, 0.0, -0.5, 4.0])

    def student(x1, x2):
        return [0.5 * x1 - x2 + 0.25, 2 * x1, x1 + x2 - 0.5]

    def teacher(x1, x2):
        return [x1, x2 + 0.5]

    def log_softmax(z):
        top = max(z)
        lse = top + math.log(sum(math.exp(v - top) for v in z))
        return [v - lse for v in z]

    ce = kd = 0.0
    for (x1, x2), label in (((0.6, 0.8), 2), ((1.0, 0.0), 0)):
        s = student(x1, x2)
        ce -= log_softmax(s)[label] / 2
        p = [math.exp(v) for v in log_softmax([v / 2 for v in teacher(x1, x2)])]
        q = log_softmax([v / 2 for v in s[:2]])
        kd -= sum(pi * qi for pi, qi in zip(p, q, strict=True)) / 2
    expected = 2 / 3 * kd + 1 / 3 * ce

    inputs = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    got = wa.loss(Batch(inputs, torch.tensor([2, 0]), 2, 1, inputs=inputs), model(inputs), model)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert abs(expected - ce) > 0.05  # the distillation term counts
    got.backward()
    assert model.head.weight.grad[3].abs().sum() == 0  # unit 3 (never seen) is not trained
    wa.after_training(c2)
    assert wa.teacher is None  # dropped at the task's end: never in a resume state


# ------------------------------------------------------------------ WA


def test_gamma_and_aligned_weights_of_a_hand_made_head():
    """Old rows norms 5 and 1 (mean 3), new rows norms 10 and 2 (mean 6): gamma = 1/2, the new
    rows halve, the old rows, the unseen row and the bias stay. Task 1 aligns nothing."""
    model = FeatureNet(5)
    wa = WA(WAConfig(memory_size=8))
    c1 = ctx(1, model, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), [0, 1], 5)
    before = model.head.weight.detach().clone()
    run_task(wa, c1)
    assert torch.equal(model.head.weight, before) and wa.gammas == []
    weight = [[3.0, 4.0], [0.0, 1.0], [6.0, 8.0], [0.0, 2.0], [7.0, 7.0]]
    bias = [0.1, 0.2, 0.3, 0.4, 0.5]
    set_head(model, weight, bias)
    run_task(wa, ctx(2, model, torch.tensor([[1.0, 1.0], [2.0, 0.0]]), [2, 3], 5))
    assert model.head.weight.tolist() == [[3.0, 4.0], [0.0, 1.0], [3.0, 4.0], [0.0, 1.0],
                                          [7.0, 7.0]]
    assert model.head.bias.tolist() == pytest.approx(bias)
    assert wa.stats()["gamma"] == [{"task": 2, "gamma": 0.5}]

    w = torch.tensor(weight)  # the function itself, on a copy
    gamma = align_weights(w, torch.tensor([True, True, False, False, False]),
                          torch.tensor([False, False, True, True, False]))
    assert gamma.item() == 0.5 and w[2].tolist() == [3.0, 4.0]


def test_weight_clipping_clamps_the_head_at_zero_and_nothing_else():
    model = FeatureNet(3)
    set_head(model, [[1.0, -2.0], [-0.5, 0.0], [3.0, 4.0]], [-1.0, 0.0, 1.0])
    WA(WAConfig(clip_weights=False)).after_step(model)
    assert model.head.weight.tolist() == [[1.0, -2.0], [-0.5, 0.0], [3.0, 4.0]]
    WA(WAConfig()).after_step(model)
    assert model.head.weight.tolist() == [[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]]
    assert model.head.bias.tolist() == [-1.0, 0.0, 1.0]  # the bias is not clipped


@pytest.mark.usefixtures("mnist_small_test_set")
def test_training_leaves_a_non_negative_head_and_aligned_norms(mnist_root):
    """Two tasks of real Split MNIST through the loop: after every step the head is clipped
    (its weights >= 0 while the hidden layers keep negative ones), and after task 2 the mean
    norm of the new classes' rows equals the old classes'."""
    run = compose_run(["benchmark=split_mnist", "strategy=wa", "benchmark.num_tasks=2",
                       "benchmark.train_samples_per_task=200", f"data.root={mnist_root}",
                       "progress=false", "hardware=cpu", "strategy.memory_size=100"])
    torch.manual_seed(run.seed)
    bench = dispatch.build_benchmark(run, CPU)
    model = dispatch.build_model(run, bench, CPU)
    strategy = dispatch.build_strategy(run)
    train_sequence(bench, model, strategy, dispatch.optimizer_factory(run), batch_size=10,
                   eval_batch_size=1000, epochs_per_task=1,
                   generator=torch.Generator().manual_seed(1))
    assert model.head.weight.min() >= 0
    assert model.net[1].weight.min() < 0
    norms = model.head.weight.norm(dim=1)
    assert norms[2:4].mean().item() == pytest.approx(norms[0:2].mean().item(), rel=1e-5)
    assert strategy.gammas[0]["gamma"] < 1  # the new classes' rows had grown longer


# ------------------------------------------------------------------ BiC

#: 10 points per class, class c around (cos c, sin c)
POINTS = torch.randn(70, 2, generator=torch.Generator().manual_seed(3)) * 0.1 + torch.tensor(
    [[math.cos(c), math.sin(c)] for c in range(7) for _ in range(10)])
LABELS = torch.arange(7).repeat_interleave(10)


def task_ctx(task: int, model):
    """Task t of a 3 x 2 class split (classes 2t-2, 2t-1) of :data:`POINTS`; class 6 unused."""
    idx = torch.nonzero((LABELS // 2) == task - 1).flatten()
    return ctx(task, model, POINTS[idx], LABELS[idx].tolist(), 7)


def test_corrected_logits_by_hand():
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    got = apply_correction(logits, torch.tensor([0.5, -1.0]),
                           torch.tensor([False, False, True, True]))
    assert got.tolist() == [[1.0, 2.0, 0.5, 1.0]]


def test_validation_split_holds_out_the_last_exemplars_and_as_many_new_images():
    """K = 40: after task 1 each class keeps its 10 images; task 2 holds out v = max(1,
    floor(0.1 * 10)) = 1 per class: the last-herded exemplar of classes 0 and 1 and one
    random image of classes 2 and 3. Stage 1 trains on the other 18 + 18."""
    model = FeatureNet(7)
    bic = BiC(BiCConfig(memory_size=40, bias_epochs=1))
    run_task(bic, task_ctx(1, model))
    assert len(bic.memory) == 20
    c2 = task_ctx(2, model)
    bic.before_task(c2)
    x, y = bic.task_data(c2)
    val_x, val_y = bic._val
    assert sorted(val_y.tolist()) == [0, 1, 2, 3] and len(y) == 36
    assert torch.bincount(y).tolist() == [9, 9, 9, 9]
    last = bic.memory.x[bic.memory.rank == 9]
    assert {tuple(r) for r in val_x[val_y < 2].tolist()} == {tuple(r) for r in last.tolist()}
    train_rows = {tuple(r) for r in x.tolist()}
    assert not any(tuple(r) in train_rows for r in val_x.tolist())  # held out of stage 1


class Phases(RunnerHook):
    def __init__(self) -> None:
        self.calls: list[tuple[int, str, int]] = []

    def before_phase(self, task: int, phase: str, total_steps: int) -> None:
        self.calls.append((task, phase, total_steps))


def test_only_the_newest_tasks_logits_are_corrected_and_the_old_correction_kept():
    """Three tasks of 2 classes (no training steps: the head is set by hand, biased towards the
    newest classes). After task 2: predict corrects classes 2, 3 with (alpha_2, beta_2) learned
    on the validation set (lower validation loss than no correction) and nothing else; class
    6..: floored. During task 3: the teacher's logits carry (alpha_2, beta_2) on classes 2, 3
    only (the distillation targets); the network being trained is not corrected. After task 3:
    (alpha_3, beta_3) on classes 4, 5 only, classes 2, 3 raw; both pairs are recorded."""
    model = FeatureNet(7)
    bic = BiC(BiCConfig(memory_size=60, bias_epochs=100, bias_batch_size=4))
    hook = Phases()
    c1 = task_ctx(1, model)
    c1.phases = PhaseRunner([hook])
    run_task(bic, c1)
    assert bic.correction is None and bic.corrections == [] and hook.calls == []

    rows = [[math.cos(c), math.sin(c)] for c in range(7)]
    set_head(model, rows, [0.0, 0.0, 3.0, 3.0, 0.0, 0.0, 0.0])  # classes 2, 3 favoured
    c2 = task_ctx(2, model)
    c2.phases = PhaseRunner([hook])
    run_task(bic, c2)
    assert hook.calls == [(2, "bias", 100)]  # 4 validation examples, batch 4: 1 step a pass
    assert c2.phases.pop_last_losses()[0][0] == "bias"
    alpha2, beta2 = bic.correction.tolist()
    assert beta2 < -0.5  # the bias towards classes 2, 3 is corrected
    assert bic.corrected.tolist() == [False, False, True, True, False, False, False]

    val_x, val_y = POINTS[[9, 19, 29, 39]], LABELS[[9, 19, 29, 39]]  # any balanced check set
    raw = model(val_x)[:, :4]
    corrected_loss = F.cross_entropy(apply_correction(raw, bic.correction,
                                                      bic.corrected[:4]), val_y)
    assert corrected_loss < F.cross_entropy(raw, val_y)

    x = torch.tensor([[0.3, -0.2], [1.0, 1.0]])
    z = model(x).detach()
    expected = z.clone()
    expected[:, 2:4] = alpha2 * z[:, 2:4] + beta2
    floor = expected[:, :4].min(1).values - UNSEEN_MARGIN
    expected[:, 4:] = floor[:, None]
    assert torch.allclose(bic.predict(model, x, None), expected)

    c3 = task_ctx(3, model)
    c3.phases = PhaseRunner([hook])
    bic.before_task(c3)
    assert bic.correction is None  # the network being trained: raw logits
    set_head(model, rows, [0.0, 0.0, 0.0, 0.0, 2.5, 2.5, 0.0])  # the network moves on
    with torch.no_grad():
        targets = bic.teacher_logits(x)
    # the task-2 network's logits z, classes 2, 3 corrected, every other unit raw
    assert torch.allclose(targets, torch.cat([z[:, :2], alpha2 * z[:, 2:4] + beta2, z[:, 4:]], 1))
    z3 = model(x).detach()
    during = bic.predict(model, x, None)
    assert torch.allclose(during[:, :6], z3[:, :6])

    bic.task_data(c3)
    bic.after_training(c3)
    alpha3, beta3 = bic.correction.tolist()
    assert (alpha3, beta3) != (alpha2, beta2) and beta3 < -0.5
    after = bic.predict(model, x, None)
    assert torch.allclose(after[:, :4], z3[:, :4])  # classes 2, 3: no longer corrected
    assert torch.allclose(after[:, 4:6], alpha3 * z3[:, 4:6] + beta3)
    assert [c["task"] for c in bic.corrections] == [2, 3]
    assert bic.corrections[0]["alpha"] == alpha2 and bic.stats()["bias_correction"][1]["beta"] == beta3


def test_distillation_targets_use_the_teachers_correction():
    """Task 3's loss distils towards the corrected teacher: it equals lambda * KD(student,
    corrected teacher) + (1 - lambda) * CE, lambda = 4/6, and differs from distilling the raw
    teacher."""
    model = FeatureNet(7)
    bic = BiC(BiCConfig(memory_size=60, bias_epochs=50, bias_batch_size=4))
    run_task(bic, task_ctx(1, model))
    set_head(model, [[math.cos(c), math.sin(c)] for c in range(7)], [0, 0, 3.0, 3.0, 0, 0, 0])
    run_task(bic, task_ctx(2, model))
    c3 = task_ctx(3, model)
    bic.before_task(c3)
    assert bic._lambda == pytest.approx(4 / 6)
    inputs, y = POINTS[[40, 5, 25]], LABELS[[40, 5, 25]]
    out = model(inputs)
    got = bic.loss(Batch(inputs, y, 3, 1, inputs=inputs), out, model)
    ab = bic.teacher_correction
    t = out.detach().clone()
    t[:, 2:4] = ab[0] * t[:, 2:4] + ab[1]

    def kd(target):
        p = F.softmax(target[:, :4] / 2, 1)
        return -(p * F.log_softmax(out[:, :4] / 2, 1)).sum(1).mean()

    ce = F.cross_entropy(out[:, :6], y)
    assert got.item() == pytest.approx((4 / 6 * kd(t) + 2 / 6 * ce).item(), rel=1e-6)
    assert abs(got.item() - (4 / 6 * kd(out.detach()) + 2 / 6 * ce).item()) > 1e-3


def test_domain_incremental_benchmarks_are_refused_by_name():
    for strategy in ("wa", "bic"):
        cfg = compose_cfg(["benchmark=split_mnist", "benchmark.scenario=domain",
                           f"strategy={strategy}"])
        with pytest.raises(ConfigError, match=f"strategy={strategy} does not run on "
                           "benchmark=split_mnist with benchmark.scenario=domain_incremental"):
            dispatch.resolve(cfg)


# ------------------------------------------------------------------ interruption and resume

SHORT = ["benchmark=split_mnist", "strategy=bic", "benchmark.num_tasks=3",
         "benchmark.train_samples_per_task=200", "progress=false", "hardware=cpu",
         "hardware.num_threads=1", "strategy.memory_size=100", "strategy.bias_epochs=20"]


@pytest.mark.usefixtures("mnist_small_test_set", "one_thread")
def test_signal_in_the_bias_phase_stops_the_run_and_it_resumes_byte_identical(
        tmp_path, mnist_root, monkeypatch):
    """SIGTERM during task 2's bias phase: the run stops at a step of that phase with task 1
    saved; the same command resumes it (task 2 again, stage 2 included) to the files of an
    uninterrupted run. A crash after task 2 (its correction in the resume state, task 3's
    teacher corrected with it) resumes byte-identical too."""
    overrides = SHORT + [f"data.root={mnist_root}"]
    whole = run_experiment(compose_run(overrides), tmp_path / "whole")
    assert [c["task"] for c in whole["strategy_stats"]["bias_correction"]] == [2, 3]
    original = PhaseRunner.run

    def signal_in_bias_phase(self, task, phase, *args, **kwargs):
        if phase == "bias" and task == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, task, phase, *args, **kwargs)

    monkeypatch.setattr(PhaseRunner, "run", signal_in_bias_phase)
    with pytest.raises(resume_mod.RunInterrupted) as info:
        run_experiment(compose_run(overrides), tmp_path / "split")
    assert info.value.tasks_done == 1
    monkeypatch.setattr(PhaseRunner, "run", original)
    done = run_experiment(compose_run(overrides), tmp_path / "split")
    assert done["status"] == "complete" and done["resumed_after_task"] == 1
    assert result_bytes(tmp_path / "split") == result_bytes(tmp_path / "whole")

    run_crashing_after_task(monkeypatch, compose_run(overrides), tmp_path / "crash", task=2)
    done = run_experiment(compose_run(overrides), tmp_path / "crash")
    assert done["resumed_after_task"] == 2
    assert result_bytes(tmp_path / "crash") == result_bytes(tmp_path / "whole")
    summary = json.loads((tmp_path / "crash" / "summary.json").read_text())
    assert summary["strategy_stats"]["bias_correction"] == whole["strategy_stats"]["bias_correction"]
