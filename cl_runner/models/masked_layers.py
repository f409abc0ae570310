"""The layers of a supermask network (:mod:`cl_runner.models.supermask`): the top-k mask with
its straight-through gradient, :class:`MaskedLayer` (a fixed weight buffer, score slots and
the mask modes) and its linear / convolution versions, and :func:`to_supermask`, which turns
a network's ``nn.Linear`` / ``nn.Conv2d`` layers into them."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.models.schemas import MaskRule, SupermaskConfig, WeightInit


class TopKMask(torch.autograd.Function):
    """``TopK_k(scores)``: 1 at the ``round(k * numel)`` largest entries, 0 elsewhere; the
    backward pass is the identity (straight-through estimator; edge-popup, Section 3)."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, keep_fraction: float) -> torch.Tensor:  # type: ignore[override]
        flat = scores.detach().flatten()
        k = kept_count(flat.numel(), keep_fraction)
        mask = torch.zeros_like(flat)
        mask[flat.topk(k, sorted=False).indices] = 1.0
        return mask.view_as(scores)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad, None


class ThresholdMask(torch.autograd.Function):
    """``1[scores >= 0]``, straight-through backward (SupSup's GNu masks,
    ``GetSubnetFast`` in RAIVNLab/supsup ``models/module_util.py``)."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (scores.detach() >= 0).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad


def kept_count(numel: int, keep_fraction: float) -> int:
    """How many of ``numel`` entries a top-k mask keeps: ``round(keep_fraction * numel)``, at
    least 1."""
    return max(1, round(keep_fraction * numel))


def topk_mask(scores: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """Float 0/1 mask of the shape of ``scores`` keeping the top ``keep_fraction`` of its
    entries (:class:`TopKMask`; differentiable, straight-through)."""
    return TopKMask.apply(scores, keep_fraction)


class MaskedLayer(nn.Module):
    """Base of :class:`MaskedLinear` and :class:`MaskedConv2d`: a fixed weight buffer and the
    mask state described in the module docstring. Subclasses implement :meth:`apply_weight`.

    Attributes:
        weight: the fixed weights, a buffer (``requires_grad=False``).
        scores: one float tensor of the weight's shape per score slot.
        keep_fraction: k of the top-k masks.
    """

    def __init__(self, weight: torch.Tensor, keep_fraction: float,
                 mask_rule: MaskRule = MaskRule.topk) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.keep_fraction = keep_fraction
        self.mask_rule = MaskRule(mask_rule)
        self.scores = nn.ParameterList()
        self._mode = "slot"
        self._slots: list[int] = [0]
        self._fixed: torch.Tensor | None = None
        self._stack: torch.Tensor | None = None  # (K, *weight.shape)
        self._coef: tuple[torch.Tensor, int | None] | None = None  # (tensor, row) -> (K,)
        self._topk = False
        self._tiebreak: torch.Tensor | None = None

    @property
    def fan_in(self) -> int:
        """Inputs per output unit: ``weight[0].numel()``."""
        return self.weight[0].numel()

    def apply_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def add_slot(self, generator: torch.Generator | None = None) -> int:
        """Append a score slot initialized as ``nn.Linear``'s default weights,
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (edge-popup's score init); returns its index."""
        bound = 1.0 / math.sqrt(self.fan_in)
        u = torch.rand(self.weight.shape, generator=generator, dtype=self.weight.dtype)
        self.scores.append(nn.Parameter(((2 * u - 1) * bound).to(self.weight.device)))
        return len(self.scores) - 1

    def use_slots(self, slots: list[int]) -> None:
        self._mode, self._slots = ("slot" if len(slots) == 1 else "batched"), list(slots)

    def use_fixed(self, mask: torch.Tensor) -> None:
        self._mode, self._fixed = "fixed", mask

    def use_combination(self, stack: torch.Tensor, coef: torch.Tensor, row: int | None,
                        topk: bool, tiebreak: torch.Tensor | None) -> None:
        self._mode, self._stack, self._coef = "combination", stack, (coef, row)
        self._topk, self._tiebreak = topk, tiebreak

    def slot_mask(self, slot: int) -> torch.Tensor:
        """The mask of ``slot`` (float 0/1, straight-through to the scores): top-k of
        |scores|, ``scores >= 0`` with ``mask_rule=threshold``, or top-k of the signed scores
        with ``mask_rule=topk_signed``."""
        if self.mask_rule == MaskRule.threshold:
            return ThresholdMask.apply(self.scores[slot])
        if self.mask_rule == MaskRule.topk_signed:
            return topk_mask(self.scores[slot], self.keep_fraction)
        return topk_mask(self.scores[slot].abs(), self.keep_fraction)

    def mask(self) -> torch.Tensor:
        """The mask of the current state, float, the weight's shape (not for batched slots)."""
        if self._mode == "slot":
            return self.slot_mask(self._slots[0])
        if self._mode == "fixed":
            return self._fixed
        if self._mode == "combination":
            coef, row = self._coef
            c = coef if row is None else coef[row]
            combined = torch.tensordot(c, self._stack, dims=1)
            if not self._topk:
                return combined
            if self._tiebreak is not None:
                combined = combined + self._tiebreak
            return topk_mask(combined, self.keep_fraction)
        raise RuntimeError(f"no single mask in mode {self._mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._mode == "batched":
            parts = x.tensor_split(len(self._slots))
            return torch.cat([self.apply_weight(part, self.weight * self.slot_mask(s))
                              for part, s in zip(parts, self._slots, strict=True)])
        return self.apply_weight(x, self.weight * self.mask())


class MaskedLinear(MaskedLayer):
    """``y = x (W * M)^T``, no bias. Input ``(B, in)``, output ``(B, out)``."""

    def apply_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight)


class MaskedConv2d(MaskedLayer):
    """2-D convolution with weight ``W * M`` and the geometry of the convolution it replaces
    (no bias). Input ``(B, C_in, H, W)``."""

    def __init__(self, weight: torch.Tensor, keep_fraction: float, conv: nn.Conv2d,
                 mask_rule: MaskRule = MaskRule.topk) -> None:
        super().__init__(weight, keep_fraction, mask_rule)
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups

    def apply_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)


def fixed_weight(shape: torch.Size, fan_in: int, cfg: SupermaskConfig) -> torch.Tensor:
    """Draw fixed weights of ``shape`` with torch's global generator (seeded by the run).

    ``signed_constant``: each weight is +-sigma with equal probability; ``kaiming_normal``:
    N(0, sigma^2); sigma = sqrt(2 / fan) (ReLU gain), fan = fan_in, or ``k * fan_in`` with
    ``scale_fan`` (edge-popup, Section 4.1; SupSup, Section 4).
    """
    fan = fan_in * (cfg.keep_fraction if cfg.scale_fan else 1.0)
    sigma = math.sqrt(2.0 / fan)
    if cfg.weight_init == WeightInit.signed_constant:
        return (torch.randint(0, 2, tuple(shape)) * 2 - 1).float() * sigma
    return torch.randn(tuple(shape)) * sigma


def to_supermask(module: nn.Module, cfg: SupermaskConfig) -> nn.Module:
    """Replace, in place and recursively, every ``nn.Linear`` / ``nn.Conv2d`` of ``module`` by
    its masked version (fixed weights from :func:`fixed_weight`, no bias, one score slot) and
    make every BatchNorm non-affine. Returns ``module``."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear | nn.Conv2d):
            shape = child.weight.shape
            fan_in = child.weight[0].numel()
            weight = fixed_weight(shape, fan_in, cfg).to(child.weight.device)
            layer = (MaskedLinear(weight, cfg.keep_fraction, cfg.mask_rule)
                     if isinstance(child, nn.Linear)
                     else MaskedConv2d(weight, cfg.keep_fraction, child, cfg.mask_rule))
            layer.add_slot()
            setattr(module, name, layer)
        elif isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, type(child)(child.num_features, eps=child.eps,
                                              momentum=child.momentum, affine=False,
                                              track_running_stats=child.track_running_stats))
        else:
            to_supermask(child, cfg)
    return module
