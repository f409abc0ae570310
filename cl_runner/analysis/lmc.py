"""Linear-mode-connectivity analyses over saved solutions (Mirzadeh et al., "Linear Mode
Connectivity in Multitask and Continual Learning", ICLR 2021, Sections 3-4 and their figures;
docs/papers.md, "Linear mode connectivity analyses"): loss along straight lines between solutions,
the loss on a plane through three solutions, distances, and Hessian curvature.

Weights are handled as flat parameter vectors ``(P,)`` in ``model.named_parameters()`` order;
buffers (BatchNorm running statistics) are handled by a :class:`BatchNormMode`:

- models without running statistics (the MLP; the reduced ResNet-18 with the authors'
  ``track_running_stats=false``, which normalizes with the statistics of each evaluation
  batch) need nothing: every point is evaluated as the run evaluates;
- ``recompute`` (default): at every point, each BatchNorm's running mean and variance are
  reset and recomputed as the plain average over ``bn_batches`` batches of the evaluated
  task's training data (BatchNorm layers in train mode, everything else in eval mode, no
  gradients), the end points included, so the whole path is treated alike;
- ``interpolate``: running statistics interpolated like the weights (on a plane: those of
  the origin); cheaper, but interpolated statistics do not match interpolated weights.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from cl_runner.analysis.hessian import EigenMethod, flat, model_objective, top_eigenpairs, unflat
from cl_runner.data.benchmark import Benchmark
from cl_runner.training.evaluate import evaluate


class BatchNormMode(str, enum.Enum):
    """How BatchNorm running statistics are set at points between solutions (module doc)."""

    recompute = "recompute"
    interpolate = "interpolate"


class Split(str, enum.Enum):
    """Which data of a task an analysis evaluates on."""

    test = "test"
    train = "train"


def param_names(model: nn.Module) -> list[str]:
    """Names of the model's parameters, in the order of the flat vectors."""
    return [n for n, _ in model.named_parameters()]


def param_vector(model: nn.Module, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The flat parameter vector ``(P,)`` of a ``state_dict`` (buffers left out), float32 on
    the model's device."""
    device = next(model.parameters()).device
    return flat([state[n].to(device) for n in param_names(model)])


def float_buffers(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The floating-point buffers of a ``state_dict`` (BatchNorm running statistics)."""
    names = {n for n, _ in model.named_buffers()}
    return {k: v for k, v in state.items() if k in names and v.is_floating_point()}


def tracked_batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, x: torch.Tensor, to_input, batch_size: int) -> None:
    """Reset every tracked BatchNorm's running statistics and recompute them as the plain
    average over the batches of ``x`` (``momentum=None``), with only BatchNorm layers in train
    mode. Leaves the model in eval mode.

    Args:
        x: stored inputs ``(N, ...)``; batches are consecutive slices of ``batch_size``.
    """
    layers = tracked_batchnorms(model)
    if not layers:
        return
    model.eval()
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for start in range(0, len(x), batch_size):
        model(to_input(x[start : start + batch_size]))
    for m, momentum in zip(layers, saved, strict=True):
        m.momentum = momentum
    model.eval()


class PointEvaluator:
    """Loss and accuracy of one task at arbitrary weight vectors.

    Args:
        model: a model of the runs' architecture (its weights are overwritten).
        benchmark: the runs' benchmark.
        task: 1-based task evaluated.
        split: its ``test`` set (default) or ``train`` set.
        max_examples: evaluate on a fixed random subset of this many examples (None = all).
        batch_size: examples per forward pass.
        bn_mode, bn_batches, bn_batch_size: BatchNorm handling (module docstring); used only
            when the model has tracked BatchNorm layers.
        seed: for the subset and the BatchNorm batches.
    """

    def __init__(self, model: nn.Module, benchmark: Benchmark, task: int,
                 split: Split = Split.test, max_examples: int | None = None,
                 batch_size: int = 1000, bn_mode: BatchNormMode = BatchNormMode.recompute,
                 bn_batches: int = 10, bn_batch_size: int = 128, seed: int = 0) -> None:
        benchmark.check_task(task)
        self.model, self.benchmark, self.task = model, benchmark, task
        gen = torch.Generator().manual_seed(seed)
        x, y = (benchmark.test_data(task) if Split(split) == Split.test
                else benchmark.train_data(task))
        if max_examples is not None and max_examples < len(y):
            pick = torch.randperm(len(y), generator=gen)[:max_examples].to(y.device)
            x, y = x[pick], y[pick]
        self.x, self.y = x, y
        masks = benchmark.class_masks("test" if Split(split) == Split.test else "train")
        self.allowed = None if masks is None else masks[task - 1]
        self.batch_size = batch_size
        self.bn_mode = BatchNormMode(bn_mode)
        self.bn_x = None
        self.bn_batch_size = bn_batch_size
        if tracked_batchnorms(model) and self.bn_mode == BatchNormMode.recompute:
            tx, _ = benchmark.train_data(task)
            pick = torch.randperm(len(tx), generator=gen)[: bn_batches * bn_batch_size]
            self.bn_x = tx[pick.to(tx.device)]

    @torch.no_grad()
    def load(self, params: torch.Tensor, buffers: dict[str, torch.Tensor] | None = None) -> None:
        """Put the weight vector ``params (P,)`` (and float ``buffers``, when given) into the
        model, then recompute BatchNorm statistics when the mode says so."""
        torch.nn.utils.vector_to_parameters(params, self.model.parameters())
        if buffers:
            own = dict(self.model.named_buffers())
            for k, v in buffers.items():
                own[k].copy_(v)
        if self.bn_x is not None:
            recompute_batchnorm(self.model, self.bn_x, self.benchmark.to_input,
                                self.bn_batch_size)

    def __call__(self, params: torch.Tensor,
                 buffers: dict[str, torch.Tensor] | None = None) -> tuple[float, float]:
        """``(loss, accuracy)`` at ``params``: mean cross-entropy (nats) and fraction correct."""
        self.load(params, buffers)
        correct, loss_sum = evaluate(self.model, self.x, self.y, self.benchmark.to_input,
                                     self.batch_size, self.allowed)
        n = max(len(self.y), 1)
        return float(loss_sum) / n, float(correct) / n


def _lerp_buffers(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float
                  ) -> dict[str, torch.Tensor]:
    return {k: a[k] + alpha * (b[k] - a[k]) for k in a}


def interpolate(evaluator: PointEvaluator, start: dict[str, torch.Tensor],
                end: dict[str, torch.Tensor], points: int = 21) -> pd.DataFrame:
    """Loss and accuracy along the straight line ``w(alpha) = (1 - alpha) w_0 + alpha w_1``.

    Args:
        evaluator: the task and data to evaluate on.
        start, end: the two solutions' ``state_dict``.
        points: evenly spaced alphas in [0, 1], end points included (>= 2).

    Returns:
        Frame with columns ``alpha, loss, accuracy`` (``points`` rows).

    Raises:
        ValueError: ``points < 2``.
    """
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    model = evaluator.model
    w0, w1 = param_vector(model, start), param_vector(model, end)
    b0, b1 = float_buffers(start, model), float_buffers(end, model)
    rows = []
    for k in range(points):
        alpha = k / (points - 1)
        buffers = _lerp_buffers(b0, b1, alpha) if evaluator.bn_mode == BatchNormMode.interpolate \
            else b0
        loss, acc = evaluator(w0 + alpha * (w1 - w0), buffers)
        rows.append({"alpha": alpha, "loss": loss, "accuracy": acc})
    return pd.DataFrame(rows, columns=["alpha", "loss", "accuracy"])


def barrier(curve: pd.DataFrame) -> dict[str, float]:
    """Loss barrier of an interpolation curve and its companions.

    ``barrier`` (the headline): the largest height of the loss above the straight line
    between the end points' losses, ``max_alpha [L(alpha) - ((1 - alpha) L(0) + alpha L(1))]``
    (Frankle et al., "Linear Mode Connectivity and the Lottery Ticket Hypothesis", ICML 2020,
    Sec. 2 with the loss for the error; Entezari et al., ICLR 2022, Eq. 1). It is 0 for a path
    whose loss never rises above that line (a monotone, convex or flat path) and measures a
    bump inside the path only.

    ``max_minus_end_mean``: the maximum loss minus the mean of the end points' losses, the
    figure this runner called "barrier" before 2026-12-06: on a monotone path it is half the
    end points' difference, not a bump. ``interior_bump``: the maximum minus the larger end
    point (0 unless some inner point is above both ends). ``accuracy_drop``: the mean of the
    end points' accuracies minus the minimum along the path.

    Args:
        curve: a frame from :func:`interpolate` (columns ``alpha, loss, accuracy``; rows
            ordered by alpha from 0 to 1).
    """
    first, last = curve.iloc[0], curve.iloc[-1]
    alpha = curve["alpha"].to_numpy(dtype=float)
    span = alpha[-1] - alpha[0] if len(alpha) > 1 else 1.0
    chord = first["loss"] + (alpha - alpha[0]) / span * (last["loss"] - first["loss"])
    return {
        "loss_start": float(first["loss"]), "loss_end": float(last["loss"]),
        "loss_max": float(curve["loss"].max()),
        "barrier": float(max(0.0, (curve["loss"].to_numpy(dtype=float) - chord).max())),
        "max_minus_end_mean": float(curve["loss"].max() - (first["loss"] + last["loss"]) / 2),
        "interior_bump": float(curve["loss"].max() - max(first["loss"], last["loss"])),
        "accuracy_start": float(first["accuracy"]), "accuracy_end": float(last["accuracy"]),
        "accuracy_min": float(curve["accuracy"].min()),
        "accuracy_drop": float((first["accuracy"] + last["accuracy"]) / 2
                               - curve["accuracy"].min()),
    }


#: what ``barrier`` means, for tables and figures
BARRIER_DEFINITION = "barrier = max over α of loss(α) − the straight line between its ends"


@dataclass
class PlaneBasis:
    """An orthonormal basis of the plane through three weight vectors (Gram-Schmidt;
    Garipov et al., "Loss Surfaces, Mode Connectivity, and Fast Ensembling of DNNs",
    NeurIPS 2018, uses the same construction for its loss-plane figures).

    Attributes:
        origin: ``(P,)`` the first point.
        e1: ``(P,)`` unit vector towards the second point.
        e2: ``(P,)`` unit vector in the plane, orthogonal to e1, towards the third point.
    """

    origin: torch.Tensor
    e1: torch.Tensor
    e2: torch.Tensor

    @classmethod
    def through(cls, p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> PlaneBasis:
        """The plane through ``p0, p1, p2`` (origin p0).

        Raises:
            ValueError: the three points are (numerically) on one line.
        """
        u, v = p1 - p0, p2 - p0
        e1 = u / u.norm()
        r = v - torch.dot(v, e1) * e1
        if r.norm() <= 1e-8 * max(float(v.norm()), 1e-30):
            raise ValueError("the three points lie on one line: no plane through them")
        return cls(p0, e1, r / r.norm())

    def coordinates(self, p: torch.Tensor) -> tuple[float, float, float]:
        """``(x, y, distance)``: the projection of ``p`` on the plane in the basis, and the
        distance from ``p`` to the plane."""
        d = p - self.origin
        x, y = float(torch.dot(d, self.e1)), float(torch.dot(d, self.e2))
        return x, y, float((d - x * self.e1 - y * self.e2).norm())

    def point(self, x: float, y: float) -> torch.Tensor:
        """The weight vector at plane coordinates ``(x, y)``."""
        return self.origin + x * self.e1 + y * self.e2


def plane_grid(evaluator: PointEvaluator, basis: PlaneBasis, anchors: Sequence[torch.Tensor],
               grid: int = 21, margin: float = 0.25,
               buffers: dict[str, torch.Tensor] | None = None) -> pd.DataFrame:
    """Loss and accuracy on a ``grid x grid`` mesh of the plane covering ``anchors`` (their
    projections' bounding box, widened by ``margin`` times its size on every side).

    Returns:
        Frame ``x, y, loss, accuracy`` (``grid**2`` rows); x, y in weight-space units (L2).
    """
    coords = [basis.coordinates(a)[:2] for a in anchors]
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-6)
    lo_x, hi_x = min(xs) - margin * span, max(xs) + margin * span
    lo_y, hi_y = min(ys) - margin * span, max(ys) + margin * span
    rows = []
    for i in range(grid):
        for j in range(grid):
            x = lo_x + (hi_x - lo_x) * i / (grid - 1)
            y = lo_y + (hi_y - lo_y) * j / (grid - 1)
            loss, acc = evaluator(basis.point(x, y), buffers)
            rows.append({"x": x, "y": y, "loss": loss, "accuracy": acc})
    return pd.DataFrame(rows, columns=["x", "y", "loss", "accuracy"])


def distance_matrix(vectors: dict[str, torch.Tensor]) -> pd.DataFrame:
    """L2 distances between every pair of weight vectors.

    Args:
        vectors: name -> ``(P,)``.

    Returns:
        Tidy frame ``a, b, distance`` (every ordered pair, the diagonal included).
    """
    names = list(vectors)
    stacked = torch.stack([vectors[n].double() for n in names])
    dist = torch.cdist(stacked, stacked).tolist()
    return pd.DataFrame([{"a": a, "b": b, "distance": dist[i][j]}
                         for i, a in enumerate(names) for j, b in enumerate(names)],
                        columns=["a", "b", "distance"])


def curvature(model: nn.Module, benchmark: Benchmark, task: int, state: dict[str, torch.Tensor],
              directions: dict[str, torch.Tensor], k: int = 5,
              method: EigenMethod = EigenMethod.lanczos, iterations: int = 50,
              batches: int = 4, batch_size: int = 256, seed: int = 0
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-``k`` Hessian eigenvalues of task ``task``'s training loss at a solution, and the
    cosine between the top eigenvectors and given directions (docs/papers.md, "Linear mode
    connectivity analyses": curvature).

    The loss is the mean cross-entropy over ``batches * batch_size`` training examples of the
    task drawn once with ``seed`` (the model in eval mode: no dropout; BatchNorm as the model
    evaluates). Eigenpairs by :func:`cl_runner.analysis.hessian.top_eigenpairs`.

    Args:
        state: the solution's ``state_dict`` (loaded into ``model``).
        directions: name -> ``(P,)`` weight-space direction, e.g. ``w_hat_t - w_hat_1``.

    Returns:
        ``(eigen, cosines)``: ``eigen`` has columns ``rank, eigenvalue`` (rank 1 = largest);
        ``cosines`` has ``direction, rank, cosine, direction_norm, rayleigh`` where
        ``rayleigh`` = d^T H d / |d|^2 is the curvature along the direction itself.
    """
    model.load_state_dict(state)
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    x, y = benchmark.train_data(task)
    pick = torch.randperm(len(y), generator=gen)[: batches * batch_size].to(y.device)
    masks = benchmark.class_masks("train")
    objective = model_objective(model, x[pick], y[pick], to_input=benchmark.to_input,
                                allowed=None if masks is None else masks[task - 1],
                                chunk_size=batch_size)
    params = tuple(p.detach() for p in model.parameters())
    values, vectors = top_eigenpairs(objective, params, k=k, method=method,
                                     iterations=max(iterations, k), generator=gen)
    eigen = pd.DataFrame({"rank": range(1, len(values) + 1), "eigenvalue": values.tolist()})
    rows = []
    for name, d in directions.items():
        norm = float(d.norm())
        unit = d / max(norm, 1e-30)
        hd = flat(objective.hvp(params, unflat(unit, params)))
        rayleigh = float(torch.dot(unit, hd))
        for rank, u in enumerate(vectors, start=1):
            rows.append({"direction": name, "rank": rank, "cosine": float(torch.dot(u, unit)),
                         "direction_norm": norm, "rayleigh": rayleigh})
    cosines = pd.DataFrame(rows, columns=["direction", "rank", "cosine", "direction_norm",
                                          "rayleigh"])
    return eigen, cosines


def grid_shape(frame: pd.DataFrame) -> int:
    """The side of the square grid of a :func:`plane_grid` frame."""
    return int(math.isqrt(len(frame)))
