"""DER and DER++, Dark Experience Replay (Buzzega et al., "Dark Experience for General Continual
Learning: a Strong, Simple Baseline", NeurIPS 2020, Section 3 "Dark Experience Replay",
Section 3.1 "Dark Experience Replay++" with its objective, Eq. 6, and Algorithm 1).

A reservoir buffer ``M`` (:class:`~cl_runner.strategies.memory.ReservoirBuffer`, with stored
logits) keeps, with each example, the network's logits ``z = h_theta(x)`` computed when it was
inserted. Each step minimizes, for the current batch ``(x, y)``::

    DER:    CE(y, f(x)) + alpha * E_{(x', z') ~ M} || z' - h(x') ||^2
    DER++:  the same + beta * E_{(x'', y'') ~ M} CE(y'', f(x''))

with ``(x', z')`` and ``(x'', y'')`` two independent batches drawn from the buffer (Eq. 6;
Algorithm 1 for the order: draw, step, then insert the current batch with its logits). Each
term is a mean over its own batch; the squared distance is the mean over the C logits
(``F.mse_loss``), as in the authors' Mammoth code, whose searched alpha values are the
defaults here, so alpha means what it meant there.

**One forward pass on the concatenation.** ``train_batch`` draws the buffer batch(es) before
the current batch is inserted (as ER here) and returns ``[current (B) | x' (k) | x'' (k)]``
with ``batch.logits = z'`` (the k rows after ``batch.num_current``); the loop runs one forward
pass on it and ``loss`` splits the output. The authors' ``observe`` (Mammoth
``models/derpp.py``) runs three separate forward passes (current, x', x''), each with its own
backward. The loss and its gradient are the same sum of per-batch means; what differs:

- BatchNorm (the reduced ResNet-18): here the batch statistics are those of the whole
  concatenation (current and replayed examples normalized together, running statistics
  updated once per step); in the authors' code each of the three batches is normalized by its
  own statistics and the running statistics are updated three times per step. The logits
  stored for the current batch are then also computed under the mixed statistics.
- The MLP (no BatchNorm): nothing, except which dropout masks are drawn (the same
  distribution). Its outputs are per-example, so the gradient equals the authors'.

The stored logits are ``output[:B].detach()``, the current batch's logits of this step's
forward pass (train mode, before the optimizer step, as the authors' ``outputs.data``),
inserted in the ``loss`` hook, the first place the output exists; they are never recomputed.
The MSE covers all C logits also on task-incremental benchmarks (the authors' code); the two
cross-entropies use the loop's per-example class masks (``mixes_tasks``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.strategies.base import STRATEGIES, cost
from cl_runner.strategies.er import ER
from cl_runner.strategies.memory import reservoir_floats
from cl_runner.strategies.schemas import DERConfig, DERPPConfig
from cl_runner.training.batch import Batch
from cl_runner.training.steps import classification_loss


def _part(allowed: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    """The class mask of examples ``start:stop`` of a batch with mask ``allowed``."""
    return allowed[start:stop] if allowed is not None and allowed.dim() == 2 else allowed


@STRATEGIES.register("der", config=DERConfig)
class DER(ER):
    """Dark Experience Replay (see the module docstring); :class:`DERPP` adds the ``beta``
    term. ER-Reservoir's buffer handling, ``stats()`` and ``mixes_tasks``, with its own batch
    and loss.

    Attributes:
        buffer: the reservoir buffer of examples, labels, task ids and logits at insertion.
        task: the task being trained.
    """

    @property
    def beta(self) -> float:
        """Weight of the second buffer batch's cross-entropy (0 for DER: no second batch)."""
        return getattr(self.cfg, "beta", 0.0)

    def train_batch(self, batch: Batch) -> Batch:
        """The current batch, then ``k`` buffer examples with their stored logits
        (``batch.logits``), then (DER++) ``k`` more drawn independently for the label term;
        ``k = replay_batch_size`` or the batch size. Unchanged while the buffer is empty."""
        buffer = self.buffer
        if len(buffer) == 0:
            return batch
        k = self.cfg.replay_batch_size or batch.num_current
        draws = [buffer.sample_index(k)]
        if self.beta > 0:
            draws.append(buffer.sample_index(k))
        idx = torch.cat(draws)
        batch.x = torch.cat([batch.x, buffer.x[idx]])
        batch.y = torch.cat([batch.y, buffer.y[idx]])
        batch.logits = buffer.logits[draws[0]]
        return batch

    def loss(self, batch: Batch, output: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """Cross-entropy of the current examples + ``alpha`` MSE of the next ``k`` outputs to
        their stored logits (+ ``beta`` cross-entropy of the rest, DER++); then the current
        batch enters the buffer with its logits of this forward pass."""
        b, y, allowed = batch.num_current, batch.y, batch.allowed
        current = output[:b]
        loss = classification_loss(current, y[:b], _part(allowed, 0, b))
        if batch.logits is not None:
            k = len(batch.logits)
            loss = loss + self.cfg.alpha * F.mse_loss(output[b : b + k], batch.logits)
            if b + k < len(y):
                loss = loss + self.beta * classification_loss(
                    output[b + k :], y[b + k :], _part(allowed, b + k, len(y)))
        self.buffer.add(batch.x[:b], y[:b], self.task, current.detach())
        return loss

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """Task k: the buffer's examples of task k held at the end (input as stored, label,
        task id, C float32 logits)."""
        return cost(model, reservoir_floats(self.buffer, num_tasks), 0.0,
                    "task_floats: the reservoir buffer's examples of task k held at the end "
                    "(input, label, task id, logits at insertion; memory_size examples in "
                    "all, shared by the tasks); state_floats: none")


@STRATEGIES.register("derpp", config=DERPPConfig)
class DERPP(DER):
    """DER++ (Eq. 6): DER plus ``beta`` times the cross-entropy of a second, independently
    drawn buffer batch with its stored labels."""
