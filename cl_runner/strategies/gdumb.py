"""GDumb: Greedy sampler and Dumb learner (Prabhu, Torr & Dokania, "GDumb: A Simple Approach
that Questions Our Progress in Continual Learning", ECCV 2020, Section 3 and its sampler
algorithm; reference code drimpossible/GDumb ``src/main.py``, ``src/opts.py``,
``src/dataloader.py``, read for understanding, not copied).

Sampler (the stream of each task, one pass in a random order drawn from the run's generator):
a memory of at most k = ``memory_size`` examples; Y = the classes seen so far (the incoming
example's included). An example of class c is stored when |M_c| < k / |Y|: into a free slot
while the memory holds fewer than k, else in place of a uniformly drawn example of the class
with most examples (ties: the smallest label). Otherwise it is dropped. The memory therefore
stays class-balanced whatever the order of the stream. This runs once per task at its start
(``task_data``: per-example Python over the task's labels, outside the training step) and the
continual phase trains on nothing (GDumb learns nothing from the stream itself).

Learner: before every evaluation (``after_training`` of each task) the network is reset to the
run's initial weights (kept from the start of task 1: "trained from scratch", the same
initialization each time) and trained on the memory alone, as the phase ``"memory"`` of the
loop's :class:`~cl_runner.training.hooks.PhaseRunner` (progress bar, interruption at a step,
the divergence check): ``epochs`` passes of shuffled minibatches of ``batch_size``, SGD with
momentum, weight decay and gradient-norm clipping, the learning rate ``0.1 * max_lr`` in the
first epoch, ``max_lr`` in the second, then cosine annealing with warm restarts
(``CosineAnnealingWarmRestarts(T_0=1, T_mult=2, eta_min=min_lr)`` stepped once per epoch from
the third), as the authors' ``experiment()``; optional random-crop augmentation
(``crop_padding``; their ``RandomCrop(28, padding=4)`` on MNIST). CutMix is not implemented:
the authors' MNIST runs use ``--regularization none``. Not reproduced: their half precision
(``model.half()``) and their input normalization by the dataset's mean and std.

Loss: cross-entropy over all outputs (class-incremental, the authors' ``criterion(outputs,
labels)``); on task-incremental benchmarks each memory example is masked to its own task's
classes (the loop's per-label masks).

Cost: ``num_tasks`` retrainings of ``epochs * ceil(|M| / batch_size)`` steps each (the paper
retrains whenever it is asked to predict; here the accuracy matrix asks after every task).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from cl_runner.data.masking import masks_by_label, rows
from cl_runner.strategies.base import STRATEGIES, Strategy, TaskContext, cost
from cl_runner.strategies.memory import floats_by_task, stored_floats
from cl_runner.strategies.memory_schemas import GDumbConfig
from cl_runner.training.hooks import PhaseRunner
from cl_runner.training.steps import batch_slice, classification_loss, shuffled


class GreedyClassBalancedMemory:
    """GDumb's memory (see the module docstring): slots ``0..size-1`` of ``x``, ``y``, ``task``.

    Attributes:
        capacity: k.
        x: ``(k, *input_shape)`` stored inputs (uint8 like the benchmark's), None until the
            first example arrives. y: int64 ``(k,)``. task: int64 ``(k,)`` 1-based task ids.
        size: slots in use.
        classes_seen: every label the stream has shown, in order of first appearance.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.task: torch.Tensor | None = None
        self.size = 0
        self.classes_seen: list[int] = []

    def __len__(self) -> int:
        return self.size

    def state_dict(self) -> dict[str, Any]:
        """The stored examples and counters (what a resume state keeps)."""
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        vars(self).update(state)

    def add_stream(self, x: torch.Tensor, y: torch.Tensor, task: int,
                   uniforms: list[float]) -> int:
        """Offer the examples ``x (N, ...)``, ``y (N,)`` of ``task`` one by one, in order.

        Args:
            uniforms: N numbers in [0, 1): the i-th picks the evicted example when example i
                is stored into a full memory (``int(u * |M_c|)``-th slot of the largest class).

        Returns:
            How many of the N examples the memory holds after the pass. One host sync (the
            labels).
        """
        k = self.capacity
        if self.x is None:
            self.x = torch.zeros((k, *x.shape[1:]), dtype=x.dtype, device=x.device)
            self.y = torch.zeros(k, dtype=y.dtype, device=y.device)
            self.task = torch.zeros(k, dtype=torch.int64, device=y.device)
        by_class: dict[int, list[int]] = {}
        for slot, c in enumerate(self.y[: self.size].tolist()):
            by_class.setdefault(c, []).append(slot)
        seen = set(self.classes_seen)
        writes: dict[int, int] = {}  # slot -> index of the stream example stored there
        for i, c in enumerate(y.tolist()):
            if c not in seen:
                seen.add(c)
                self.classes_seen.append(c)
            held = by_class.setdefault(c, [])
            if len(held) * len(seen) >= k:  # |M_c| >= k / |Y|: dropped
                continue
            if self.size < k:
                slot = self.size
                self.size += 1
            else:
                largest = max(by_class, key=lambda d: (len(by_class[d]), -d))
                victims = by_class[largest]
                slot = victims.pop(int(uniforms[i] * len(victims)))
            held.append(slot)
            writes[slot] = i
        if writes:
            slots = torch.tensor(list(writes), dtype=torch.int64, device=y.device)
            src = torch.tensor(list(writes.values()), dtype=torch.int64, device=y.device)
            self.x.index_copy_(0, slots, x[src])
            self.y.index_copy_(0, slots, y[src])
            self.task.index_fill_(0, slots, task)
        return len(writes)

    def class_counts(self) -> dict[int, int]:
        """Label -> stored examples (one host sync)."""
        counts: dict[int, int] = {}
        for c in self.y[: self.size].tolist() if self.size else []:
            counts[c] = counts.get(c, 0) + 1
        return dict(sorted(counts.items()))


def random_crop(x: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad images ``x (B, C, H, W)`` by ``padding`` per side and cut each back to H x W at
    its offset ``offsets (B, 2)`` (row, column) in ``[0, 2 * padding]`` (torchvision's
    ``RandomCrop(size, padding)``, batched). Other shapes are returned unchanged."""
    if padding == 0 or x.dim() != 4:
        return x
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    r = offsets[:, :1] + torch.arange(h, device=x.device)  # (B, H)
    s = offsets[:, 1:] + torch.arange(w, device=x.device)  # (B, W)
    return padded[torch.arange(b, device=x.device)[:, None, None, None],
                  torch.arange(c, device=x.device)[None, :, None, None],
                  r[:, None, :, None], s[:, None, None, :]]


@STRATEGIES.register("gdumb", config=GDumbConfig)
class GDumb(Strategy):
    """GDumb (see the module docstring). ``stats()`` reports the memory per class and the
    steps of each retraining."""

    own_backward = "its retraining on the memory (its whole training) runs"

    def __init__(self, cfg: GDumbConfig) -> None:
        super().__init__(cfg)
        cfg.validate()  # ConfigError on an out-of-range value (checked first by dispatch)
        self.memory = GreedyClassBalancedMemory(cfg.memory_size)
        self.initial: dict[str, torch.Tensor] | None = None  # the run's initial weights
        self.retrain_steps: list[int] = []
        self.stored_per_task: list[int] = []

    def before_task(self, ctx: TaskContext) -> None:
        if self.initial is None:  # task 1 (a resumed run has it from its state)
            self.initial = {n: t.detach().clone() for n, t in ctx.model.state_dict().items()}

    def task_data(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the greedy sampler over the task's stream (a random order of its training set);
        the continual phase then trains on nothing (an empty set)."""
        x, y = ctx.train_x, ctx.train_y
        order = torch.randperm(len(y), generator=ctx.generator).to(y.device)
        uniforms = torch.rand(len(y), generator=ctx.generator, dtype=torch.float64).tolist()
        self.stored_per_task.append(self.memory.add_stream(x[order], y[order], ctx.task,
                                                           uniforms))
        return x[:0], y[:0]

    def after_training(self, ctx: TaskContext) -> None:
        masks = ctx.benchmark.class_masks("train")
        steps = self.retrain(ctx.model, ctx.benchmark.to_input, masks, ctx.generator,
                             ctx.phases, ctx.task, autocast=ctx.precision.autocast)
        self.retrain_steps.append(steps)

    def retrain(self, model: nn.Module, to_input, masks: torch.Tensor | None,
                generator: torch.Generator, phases: PhaseRunner | None = None,
                task: int = 0,
                autocast: Callable[[], AbstractContextManager] = nullcontext) -> int:
        """Reset ``model`` to the initial weights and train it on the memory alone (module
        docstring), as the phase ``"memory"`` of ``phases``. Returns the steps run.

        Args:
            to_input: the benchmark's stored-batch -> model-input transform.
            masks: the benchmark's training masks ``(T, C)`` or None; when given each memory
                example is masked to the classes of the task owning its label.
            generator: the run's CPU generator (shuffles, crop offsets).
            autocast: the run's ``hardware.precision`` context: forward pass and loss run
                under it (bf16; 16-mixed is refused, see ``own_backward``).
        """
        cfg, mem = self.cfg, self.memory
        model.load_state_dict(self.initial)
        n = len(mem)
        if n == 0:
            return 0
        x, y = mem.x[:n], mem.y[:n]
        allowed = None if masks is None else masks_by_label(masks)[y]
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=cfg.max_lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=1, T_mult=2, eta_min=cfg.min_lr)
        epoch = 0
        bs, pad = cfg.batch_size, cfg.crop_padding

        def start_epoch() -> tuple[torch.Tensor, torch.Tensor | None]:
            nonlocal epoch
            if epoch <= 1:  # warm start: 0.1 max_lr, then max_lr (the authors' experiment())
                for group in opt.param_groups:
                    group["lr"] = cfg.max_lr * (0.1 if epoch == 0 else 1.0)
            else:
                schedule.step()
            epoch += 1
            offsets = (torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).to(y.device)
                       if pad and x.dim() == 4 else None)
            return shuffled(n, generator, y.device), offsets

        def step(state, i: int) -> torch.Tensor:
            order, offsets = state
            idx = batch_slice(order, i, bs)
            xb = x[idx] if offsets is None else random_crop(x[idx], offsets[idx], pad)
            with autocast():
                loss = classification_loss(model(to_input(xb)), y[idx], rows(allowed, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            opt.step()
            return loss.detach()

        model.train()
        steps = (phases or PhaseRunner()).run(task, "memory", cfg.epochs, math.ceil(n / bs),
                                              start_epoch, step)
        for p in params:
            p.grad = None
        return steps

    def stats(self) -> dict[str, Any]:
        return {"memory_size": len(self.memory),
                "memory_per_class": {str(c): k for c, k in self.memory.class_counts().items()},
                "stored_per_task": self.stored_per_task, "retrain_steps": self.retrain_steps}

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """Task k: the memory's examples of task k held at the end (input as stored, label,
        task id). State: the initial weights every retraining starts from."""
        n = len(self.memory)
        per_task = ([0.0] * num_tasks if n == 0 else floats_by_task(
            self.memory.x[:n], self.memory.y[:n], self.memory.task[:n], num_tasks))
        state = 0.0 if self.initial is None else stored_floats(*self.initial.values())
        return cost(model, per_task, state,
                    "task_floats: the class-balanced memory's examples of task k held at the "
                    "end (input, label, task id; memory_size in all); state_floats: the "
                    "initial weights each retraining starts from")
