"""ER-ACE, experience replay with the asymmetric cross-entropy (Caccia, Aljundi, Asadi,
Tuytelaars, Pineau & Belilovsky, "New Insights on Reducing Abrupt Representation Change in
Online Continual Learning", ICLR 2022, Section 4, "ER-ACE"; the authors' code pclucas14/AML,
``methods/er_ace.py`` and ``methods/er.py``).
Section and equation numbers are recalled (the paper's text was not at hand when this was
written); every statement about the authors' code was read in it.

Each step trains on the incoming batch ``X_in`` and a batch ``X_bf`` drawn uniformly from a
reservoir buffer (:class:`~cl_runner.strategies.memory.ReservoirBuffer`, as
``strategy=er``), with the sum of two mean cross-entropies::

    L = CE_{C_in}(X_in) + CE_{C_bf}(X_bf)

where ``CE_S`` is the cross-entropy with a softmax over the classes in S only (the other
logits masked out). The asymmetry: the incoming examples' loss ranges over ``C_in``, the
classes present in the incoming batch, so that new classes do not push down the logits of
old classes (whose representations would otherwise drift towards the new, poorly embedded
examples); the replayed examples are contrasted against all classes.

``strategy.variant`` (:class:`~cl_runner.strategies.replay_schemas.ACEVariant`):

- ``paper`` (default): ``C_in`` = the classes present in the incoming batch; ``C_bf`` = every
  class seen so far (incoming batches up to this one). This is the paper's loss as recalled
  (``C_curr`` for the incoming batch, ``C_old`` and ``C_curr`` for the buffer batch); the
  paper's text was not read for this module, the code below was.
- ``authors``: the authors' code (and Mammoth's ``models/er_ace.py``): ``C_in`` also keeps
  the classes not seen yet (``mask[:, seen_so_far.max():] = 1``; here: every class that has
  not appeared in an incoming batch, which differs from the code's "labels >= the largest
  seen" only while a task's classes have not all appeared); ``C_bf`` = every output.

The buffer batch is drawn before the incoming batch is inserted, and replay starts as soon as
the buffer holds an example (task-free, as the authors' ER-ACE, which forces ``task_free``),
so task 1 also replays. One forward pass on ``[incoming | replayed]`` (the MLP has no
BatchNorm, so this equals the authors' two passes; with BatchNorm the statistics would be
those of the concatenation, as for DER here). On task-incremental benchmarks each example's
mask is also intersected with the loop's per-example class mask (``mixes_tasks``).
No host sync: the seen and present classes are boolean ``(C,)`` tensors updated by scatter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.data.masking import mask_logits
from cl_runner.strategies.base import STRATEGIES
from cl_runner.strategies.er import ER
from cl_runner.strategies.replay_schemas import ACEVariant
from cl_runner.strategies.schemas import ERACEConfig
from cl_runner.training.batch import Batch
from cl_runner.training.steps import classification_loss


def present_classes(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The classes that occur in ``y`` int64 ``(B,)``: bool ``(C,)`` (no host sync)."""
    return torch.zeros(num_classes, dtype=torch.bool, device=y.device).index_fill_(0, y, True)


def asymmetric_loss(output: torch.Tensor, y: torch.Tensor, num_incoming: int,
                    incoming_classes: torch.Tensor, replay_classes: torch.Tensor | None,
                    allowed: torch.Tensor | None = None) -> torch.Tensor:
    """ER-ACE's loss of a batch ``[incoming (B) | replayed (k)]``: the mean cross-entropy of the
    first ``num_incoming`` rows over ``incoming_classes`` plus the mean cross-entropy of the
    others over ``replay_classes`` (0 when there are none), as one masked cross-entropy with
    per-row weights 1/B and 1/k (one softmax and one backward node for both terms).

    Args:
        output: float ``(B + k, C)`` logits. y: int64 ``(B + k,)`` labels.
        incoming_classes: bool ``(C,)``, the logits the incoming examples' softmax covers.
        replay_classes: bool ``(C,)`` for the replayed examples, or None for all outputs.
        allowed: the loop's task-incremental mask (None, ``(C,)`` or ``(B + k, C)``),
            intersected with both.

    Returns:
        Scalar tensor (nats).
    """
    n, b = len(y), num_incoming
    if n == b:
        mask = incoming_classes if allowed is None else allowed & incoming_classes
        return classification_loss(output, y, mask)
    incoming = torch.arange(n, device=y.device) < b
    replay = torch.ones_like(incoming_classes) if replay_classes is None else replay_classes
    mask = torch.where(incoming[:, None], incoming_classes, replay)  # (B + k, C)
    if allowed is not None:
        mask = mask & allowed
    per_example = F.cross_entropy(mask_logits(output, mask), y, reduction="none")
    return (per_example * torch.where(incoming, 1.0 / b, 1.0 / (n - b))).sum()


@STRATEGIES.register("er_ace", config=ERACEConfig)
class ERACE(ER):
    """ER-ACE (see the module docstring): ER-Reservoir's buffer, batch, ``stats()`` and
    ``parameter_cost``, with the asymmetric loss.

    Attributes:
        seen: bool ``(C,)``, the classes of every incoming batch so far (None before the
            first step).
    """

    def __init__(self, cfg: ERACEConfig) -> None:
        super().__init__(cfg)
        self.variant = ACEVariant(cfg.variant)
        self.seen: torch.Tensor | None = None

    def loss(self, batch: Batch, output: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """The asymmetric cross-entropy of the incoming and replayed examples
        (:func:`asymmetric_loss`), the class sets of ``strategy.variant``."""
        b, num_classes = batch.num_current, output.shape[1]
        present = present_classes(batch.y[:b], num_classes)
        self.seen = present.clone() if self.seen is None else self.seen | present
        if self.variant == ACEVariant.authors:
            incoming, replay = present | ~self.seen, None
        else:
            incoming, replay = present, self.seen
        return asymmetric_loss(output, batch.y, b, incoming, replay, batch.allowed)
