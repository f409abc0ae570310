#!/usr/bin/env python
"""Instrument MC-SGD's line phase during a real run (issue 33): what it does, task by task.

Runs ``cl-run`` in-process (:func:`cl_runner.api.run`, the overrides given after ``--``) with
:meth:`MCSGD.line_phase` wrapped. For every task t >= 2 it records, without changing the run
(the global RNG that dropout draws from is saved and restored around every measurement; the
run's generators are never touched):

- the line objective's two terms separately, memory (anchor ``w_bar_{t-1}``) and subset of
  task t (anchor ``w_hat_t``), at every point alpha = 0, 1/K, ..., 1, before and after the
  phase, in eval mode (mean cross-entropy, nats) and their accuracies;
- the line gradient at the phase's start over the whole memory and subset (the runner's
  ``line_gradient`` weights, batch-mean losses): in eval mode, in train mode averaged over
  ``--masks`` dropout masks, and one mask's; their L2 norms and the cosine of eval with the
  train-mode mean;
- distances (L2 over all parameters): start to end of the phase, ``w_bar_t`` to
  ``w_bar_{t-1}`` and to ``w_hat_t``;
- test accuracy on tasks 1..t-1 (mean) and on task t at ``w_bar_{t-1}``, at ``w_hat_t`` (end
  of the continual phase), at the line phase's start and at ``w_bar_t`` (its end, the
  evaluated model);
- with ``--counterfactual``: the same line phase run first in the *other* mode
  (``line_train_mode`` flipped) from the same start, memory, subset and shuffles, then undone:
  its test accuracies (``other_*``), distance moved and term losses (``after_other_mode``),
  and its end's distance to the run's own ``w_bar_t``: the effect of the mode alone, task by
  task, on one trajectory.

Writes ``OUT/line_probe.csv`` (one row per task) and ``OUT/line_losses.csv`` (task, when,
term, alpha, loss, accuracy); the run itself goes to ``OUT/run`` (``output_dir``).

Usage: python scripts/mcsgd_line_probe.py OUT [--masks 8] -- strategy=mcsgd benchmark=... seed=1
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch.func import functional_call

from cl_runner.api import run
from cl_runner.data.masking import mask_logits
from cl_runner.strategies.mcsgd import MCSGD

ROWS: list[dict] = []
LOSSES: list[dict] = []
STATE: dict = {}


def _flat(w: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in w.values()])


def _dist(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return float(torch.linalg.vector_norm(_flat(a) - _flat(b)))


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@torch.no_grad()
def _test_accuracy(model, weights, benchmark, tasks: range) -> list[float]:
    """Test accuracy (fraction) of ``weights`` on each task of ``tasks``, eval mode."""
    was = model.training
    model.eval()
    out = []
    for t in tasks:
        x, y = benchmark.test_data(t)
        correct = 0
        for i in range(0, len(y), 5000):
            logits = functional_call(model, weights, (benchmark.to_input(x[i:i + 5000]),))
            correct += int((logits.argmax(1) == y[i:i + 5000]).sum())
        out.append(correct / len(y))
    model.train(was)
    return out


@torch.no_grad()
def _term_losses(model, strategy, terms, to_input, task: int, when: str) -> None:
    was = model.training
    model.eval()
    w = {n: p.detach() for n, p in model.named_parameters()}
    for name, (anchor, x, y, allowed) in zip(("memory", "subset"), terms, strict=True):
        xin = to_input(x)
        for alpha in strategy.alphas():
            point = {n: anchor[n] + alpha * (w[n] - anchor[n]) for n in w}
            logits = functional_call(model, point, (xin,))
            if allowed is not None:
                logits = mask_logits(logits, allowed)
            LOSSES.append({"task": task, "when": when, "term": name, "alpha": alpha,
                           "loss": float(F.cross_entropy(logits, y)),
                           "accuracy": float((logits.argmax(1) == y).float().mean())})
    model.train(was)


def _line_gradient(model, strategy, terms, to_input, train: bool) -> torch.Tensor:
    """The line gradient at ``model``'s weights over whole terms, the runner's point weights,
    batch-mean cross-entropy per term: ``(2, P)``, row 0 the memory term's, row 1 the
    subset's (P = all parameters, flat)."""
    was = model.training
    model.train(train)
    params = dict(model.named_parameters())
    out = torch.zeros(len(terms), sum(p.numel() for p in params.values()))
    for total, (anchor, x, y, allowed) in zip(out, terms, strict=True):
        xin = to_input(x)
        for alpha, weight in strategy.point_weights():
            point = {n: (anchor[n] + alpha * (p.detach() - anchor[n])).requires_grad_()
                     for n, p in params.items()}
            logits = functional_call(model, point, (xin,))
            if allowed is not None:
                logits = mask_logits(logits, allowed)
            g = torch.autograd.grad(F.cross_entropy(logits, y), list(point.values()))
            total += weight * torch.cat([gi.reshape(-1) for gi in g])
    model.train(was)
    return out


def probed_line_phase(original, masks: int, counterfactual: bool = False):
    def line_phase(self, model, terms, to_input, generator, phases=None, task=0, groups=None,
                   **kw):
        ctx = STATE["ctx"]
        rng = torch.get_rng_state()
        w_prev, w_hat = terms[0][0], terms[1][0]
        start = _params(model)
        row = {"task": task, "line_train_mode": self.cfg.line_train_mode}
        _term_losses(model, self, terms, to_input, task, "before")
        g_eval = _line_gradient(model, self, terms, to_input, train=False)
        g_train = [_line_gradient(model, self, terms, to_input, train=True) for _ in range(masks)]
        g_mean = torch.stack(g_train).mean(0)  # (2, P)
        for i, term in enumerate(("memory", "subset")):
            row[f"grad_{term}_eval"] = float(g_eval[i].norm())
            row[f"grad_{term}_train_mean"] = float(g_mean[i].norm())
            row[f"grad_{term}_train_one"] = float(torch.stack([g[i] for g in g_train])
                                                  .norm(dim=1).mean())
        row.update(grad_norm_eval=float(g_eval.sum(0).norm()),
                   grad_norm_train_mean=float(g_mean.sum(0).norm()),
                   grad_cos_eval_train=float(F.cosine_similarity(g_eval.sum(0), g_mean.sum(0),
                                                                 dim=0)),
                   grad_cos_memory_subset_eval=float(F.cosine_similarity(g_eval[0], g_eval[1],
                                                                         dim=0)))
        bench = ctx.benchmark
        for label, w in (("w_prev", w_prev), ("w_hat", w_hat), ("start", start)):
            acc = _test_accuracy(model, w, bench, range(1, task + 1))
            row[f"old_acc_{label}"] = sum(acc[:-1]) / (task - 1)
            row[f"new_acc_{label}"] = acc[-1]
        if counterfactual:  # the other mode's line phase from the same state, then undone
            gen_state = generator.get_state()
            self.cfg.line_train_mode = not self.cfg.line_train_mode
            try:
                original(self, model, terms, to_input, generator, None, task, groups, **kw)
            finally:
                self.cfg.line_train_mode = not self.cfg.line_train_mode
            other = _params(model)
            acc = _test_accuracy(model, other, bench, range(1, task + 1))
            row.update(other_old_acc_w_bar=sum(acc[:-1]) / (task - 1), other_new_acc_w_bar=acc[-1],
                       other_moved=_dist(other, start), other_to_own_mode=math.nan)
            _term_losses(model, self, terms, to_input, task, "after_other_mode")
            MCSGD._load(model, start)
            generator.set_state(gen_state)
        torch.set_rng_state(rng)
        original(self, model, terms, to_input, generator, phases, task, groups, **kw)
        rng = torch.get_rng_state()
        end = _params(model)
        if counterfactual:
            row["other_to_own_mode"] = _dist(end, other)
        _term_losses(model, self, terms, to_input, task, "after")
        acc = _test_accuracy(model, end, bench, range(1, task + 1))
        row.update(old_acc_w_bar=sum(acc[:-1]) / (task - 1), new_acc_w_bar=acc[-1],
                   moved=_dist(end, start), w_bar_to_prev=_dist(end, w_prev),
                   w_bar_to_w_hat=_dist(end, w_hat), w_hat_to_prev=_dist(w_hat, w_prev))
        ROWS.append(row)
        torch.set_rng_state(rng)
    return line_phase


def probe(out: Path, overrides: list[str], masks: int = 8, counterfactual: bool = False):
    """Run ``overrides`` into ``out / "run"`` with the line phase instrumented (module
    docstring); ``MCSGD`` is restored afterwards. Returns ``(RunResult, line_probe frame,
    line_losses frame)``, both frames also written to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ROWS.clear()
    LOSSES.clear()
    after_training, line_phase = MCSGD.after_training, MCSGD.line_phase

    def keep_ctx(self, ctx):
        STATE["ctx"] = ctx
        return after_training(self, ctx)

    MCSGD.after_training = keep_ctx
    MCSGD.line_phase = probed_line_phase(line_phase, masks, counterfactual)
    try:
        result = run(overrides, out_dir=out / "run")
    finally:
        MCSGD.after_training, MCSGD.line_phase = after_training, line_phase
        STATE.clear()
    rows, losses = pd.DataFrame(ROWS), pd.DataFrame(LOSSES)
    rows.to_csv(out / "line_probe.csv", index=False)
    losses.to_csv(out / "line_losses.csv", index=False)
    return result, rows, losses


def main(argv: list[str]) -> int:
    if "--" not in argv:
        sys.exit(__doc__)
    cut = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--masks", type=int, default=8)
    parser.add_argument("--counterfactual", action="store_true")
    args = parser.parse_args(argv[:cut])
    result, rows, _ = probe(args.out, argv[cut + 1:], args.masks, args.counterfactual)
    s = result.summary
    print(f"average accuracy {100 * s['average_accuracy']:.2f}  forgetting "
          f"{s['forgetting']:.3f}  ({'skipped' if result.skipped else 'ran'})")
    if result.skipped:
        print("the run folder already held this run: nothing was measured")
    elif len(rows):
        cols = ["task", "old_acc_w_prev", "old_acc_w_hat", "old_acc_start", "old_acc_w_bar",
                "new_acc_w_hat", "new_acc_w_bar", "moved", "grad_memory_eval",
                "grad_memory_train_mean", "grad_subset_eval", "grad_subset_train_mean",
                "grad_cos_eval_train"]
        print(rows[cols].round(3).to_string(index=False))
    return 0 if not math.isnan(s["average_accuracy"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
