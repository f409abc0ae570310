"""Supermask networks: fixed random weights, learned binary masks over them.

Sources: Ramanujan et al., "What's Hidden in a Randomly Weighted Neural Network?" (CVPR 2020;
edge-popup: real-valued scores per weight, the top-k% by |score| are kept, straight-through
gradient to the scores, signed Kaiming constant weights); Wortsman et al., "Supermasks in
Superposition" (SupSup, NeurIPS 2020, Sections 3-4: one mask per task over one fixed random
network, and the superposition ``W * sum_i alpha_i M_i`` used for task inference).

Every ``nn.Linear`` and ``nn.Conv2d`` of a network is replaced by a :class:`MaskedLinear` /
:class:`MaskedConv2d` whose weight is a *buffer* drawn once from the run seed (never a
parameter, so no optimizer can change it; no bias). The only parameters are the mask scores of
the layers' *score slots* (one real tensor per slot, same shape as the weight) and, for
ImpressLearn, the coefficient vectors kept in :attr:`SupermaskNet.coefficients`. What mask a
layer applies is a state the strategy sets for the whole network (:class:`SupermaskNet`):

    slot s           mask = TopK_k(|scores_s|)                 (edge-popup; straight-through)
    fixed            mask = M given (a stored binary task mask, or any float tensor)
    combination      mask = sum_i c_i S_i  over a stack S (K, *weight) and coefficients c (K,)
                     (``topk=True``: TopK_k of that sum, straight-through to c)
    batched slots    the batch is split into n equal parts, part j uses slot s_j

``TopK_k`` keeps exactly ``round(k * numel)`` entries of each layer (ties broken by
``torch.topk``). BatchNorm layers become non-affine (no learned scale or shift), as SupSup
does for its convolutional networks.

Models: ``model=masked_mlp`` (the MLP of :mod:`cl_runner.models.mlp`, masked) and
``model=masked_resnet18_reduced`` (the reduced ResNet-18 of :mod:`cl_runner.models.resnet`,
masked). A new network is built with one score slot (slot 0) in use, so any strategy can train
it (plain fine-tuning then trains one shared mask); ``strategy=supsup`` and
``strategy=impresslearn`` manage the slots per task.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.models.mlp import MLP
from cl_runner.models.resnet import (
    ResNet18Reduced,
    ResNet18ReducedConfig,
    build_resnet18_reduced,
)
from cl_runner.models.schemas import (
    MODELS,
    MaskedMLPConfig,
    MaskedResNet18ReducedConfig,
    SupermaskConfig,
    WeightInit,
)


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

    def __init__(self, weight: torch.Tensor, keep_fraction: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.keep_fraction = keep_fraction
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
        """The top-k mask of ``slot`` (float 0/1, differentiable to the scores)."""
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

    def __init__(self, weight: torch.Tensor, keep_fraction: float, conv: nn.Conv2d) -> None:
        super().__init__(weight, keep_fraction)
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
            layer = (MaskedLinear(weight, cfg.keep_fraction) if isinstance(child, nn.Linear)
                     else MaskedConv2d(weight, cfg.keep_fraction, child))
            layer.add_slot()
            setattr(module, name, layer)
        elif isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, type(child)(child.num_features, eps=child.eps,
                                              momentum=child.momentum, affine=False,
                                              track_running_stats=child.track_running_stats))
        else:
            to_supermask(child, cfg)
    return module


class SupermaskNet(nn.Module):
    """A network whose linear and convolution layers are :class:`MaskedLayer` s, with
    network-wide control of the masks (see the module docstring).

    Input/output: those of the wrapped network (MNIST MLP: ``(B, 1, 28, 28)`` -> ``(B, 10)``).

    Attributes:
        body: the wrapped network.
        coefficients: ImpressLearn's per-task coefficient tensors (registered here so that
            ``parameters()`` lists them; the strategy hands the current one to the optimizer).
        keep_fraction: k of every layer's top-k.
    """

    def __init__(self, body: nn.Module, keep_fraction: float) -> None:
        super().__init__()
        self.body = body
        self.keep_fraction = keep_fraction
        self.coefficients = nn.ParameterList()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def masked_layers(self) -> list[MaskedLayer]:
        """The masked layers, in registration order (L of them)."""
        return [m for m in self.body.modules() if isinstance(m, MaskedLayer)]

    def num_weights(self) -> int:
        """Total number of masked weights: the bits of one binary mask of the network."""
        return sum(layer.weight.numel() for layer in self.masked_layers())

    def num_slots(self) -> int:
        """Number of score slots (the same in every layer)."""
        return len(self.masked_layers()[0].scores)

    def add_slot(self, generator: torch.Generator | None = None) -> int:
        """A new score slot in every layer (scores drawn with ``generator``); returns its index."""
        return [layer.add_slot(generator) for layer in self.masked_layers()][0]

    def slot_parameters(self, slot: int) -> list[nn.Parameter]:
        """The scores of ``slot``, one tensor per layer."""
        return [layer.scores[slot] for layer in self.masked_layers()]

    def use_slot(self, slot: int) -> None:
        """Masks from the scores of ``slot`` (top-k, straight-through)."""
        for layer in self.masked_layers():
            layer.use_slots([slot])

    def use_slots_batched(self, slots: list[int]) -> None:
        """Split every batch into ``len(slots)`` equal parts; part j goes through slot
        ``slots[j]``'s masks (trains several masks on the same data in one pass)."""
        for layer in self.masked_layers():
            layer.use_slots(slots)

    def use_masks(self, masks: list[torch.Tensor]) -> None:
        """Fixed masks, one per layer (bool or float, each of its layer's weight shape).

        Raises:
            ValueError: wrong number of masks or a wrong shape.
        """
        layers = self.masked_layers()
        if len(masks) != len(layers):
            raise ValueError(f"{len(masks)} masks for {len(layers)} masked layers")
        for layer, m in zip(layers, masks, strict=True):
            if m.shape != layer.weight.shape:
                raise ValueError(f"mask of shape {tuple(m.shape)} for a weight of shape "
                                 f"{tuple(layer.weight.shape)}")
            layer.use_fixed(m)

    def use_combination(self, stacks: list[torch.Tensor], coef: torch.Tensor, *,
                        topk: bool = False, tiebreak: list[torch.Tensor] | None = None) -> None:
        """Mask of layer l = ``sum_i c_{l,i} stacks[l][i]`` (optionally top-k of it).

        Args:
            stacks: per layer, float ``(K, *weight.shape)``.
            coef: ``(K,)`` (the same coefficients in every layer) or ``(L, K)`` (row l for
                layer l); gradients flow to it.
            topk: keep the top-k of the combination (straight-through to ``coef``).
            tiebreak: per layer, a small fixed tensor added before the top-k (breaks the ties
                of a sum of binary masks), or None.

        Raises:
            ValueError: ``coef`` does not match the number of layers or stack entries.
        """
        layers = self.masked_layers()
        if coef.dim() not in (1, 2) or (coef.dim() == 2 and coef.shape[0] != len(layers)) \
                or coef.shape[-1] != stacks[0].shape[0]:
            raise ValueError(f"coefficients of shape {tuple(coef.shape)} for {len(layers)} layers "
                             f"and {stacks[0].shape[0]} stacked masks")
        for i, (layer, stack) in enumerate(zip(layers, stacks, strict=True)):
            layer.use_combination(stack, coef, None if coef.dim() == 1 else i, topk,
                                  None if tiebreak is None else tiebreak[i])

    @torch.no_grad()
    def current_masks(self) -> list[torch.Tensor]:
        """The masks of the current state, one per layer, detached (float)."""
        return [layer.mask().detach() for layer in self.masked_layers()]

    @torch.no_grad()
    def slot_masks(self, slot: int) -> list[torch.Tensor]:
        """The binary top-k masks of ``slot``, bool, one per layer."""
        return [layer.slot_mask(slot).bool() for layer in self.masked_layers()]

    def fixed_state(self) -> dict[str, torch.Tensor]:
        """Copies of the fixed weights, layer name -> tensor (what must never change)."""
        return {n: b.detach().clone() for n, b in self.named_buffers() if n.endswith("weight")}


def _build(body: nn.Module, cfg: SupermaskConfig) -> SupermaskNet:
    cfg.validate()
    return SupermaskNet(to_supermask(body, cfg), cfg.keep_fraction)


@MODELS.register("masked_mlp", config=MaskedMLPConfig)
def build_masked_mlp(cfg: MaskedMLPConfig, input_shape: tuple[int, ...],
                     num_classes: int) -> SupermaskNet:
    """The masked MLP for inputs of shape ``input_shape`` (e.g. ``(1, 28, 28)``)."""
    return _build(MLP(math.prod(input_shape), list(cfg.hidden_sizes), num_classes), cfg)


@MODELS.register("masked_resnet18_reduced", config=MaskedResNet18ReducedConfig)
def build_masked_resnet18_reduced(cfg: MaskedResNet18ReducedConfig, input_shape: tuple[int, ...],
                                  num_classes: int) -> SupermaskNet:
    """The masked reduced ResNet-18 for images ``(C, H, W)`` (H, W multiples of 32).

    Raises:
        ConfigError: inputs that are not such images (as ``model=resnet18_reduced``).
    """
    plain = ResNet18ReducedConfig(nf=cfg.nf, num_blocks=list(cfg.num_blocks),
                                  track_running_stats=cfg.track_running_stats)
    body: ResNet18Reduced = build_resnet18_reduced(plain, input_shape, num_classes)
    return _build(body, cfg)
