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

The layers and the top-k mask are in :mod:`cl_runner.models.masked_layers`; this module holds
the network-wide mask control (:class:`SupermaskNet`) and the registered models.

Models: ``model=masked_mlp`` (the MLP of :mod:`cl_runner.models.mlp`, masked) and
``model=masked_resnet18_reduced`` (the reduced ResNet-18 of :mod:`cl_runner.models.resnet`,
masked). A new network is built with one score slot (slot 0) in use, so any strategy can train
it (plain fine-tuning then trains one shared mask); ``strategy=supsup`` and
``strategy=impresslearn`` manage the slots per task.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from cl_runner.errors import ConfigError
from cl_runner.models.masked_layers import (
    MaskedConv2d,
    MaskedLayer,
    MaskedLinear,
    kept_count,
    to_supermask,
    topk_mask,
)
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
)

#: the layers and mask helpers (:mod:`cl_runner.models.masked_layers`) are re-exported
__all__ = ["MaskedConv2d", "MaskedLayer", "MaskedLinear", "MaskedMLPConfig",
           "MaskedResNet18ReducedConfig", "SupermaskNet", "build_masked_mlp",
           "build_masked_resnet18_reduced", "kept_count", "to_supermask", "topk_mask"]


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

    def __init__(self, body: nn.Module, keep_fraction: float,
                 real_outputs: int | None = None) -> None:
        super().__init__()
        self.body = body
        self.keep_fraction = keep_fraction
        self.coefficients = nn.ParameterList()
        self.real_outputs = real_outputs
        self.full_output = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's outputs ``(B, O)``; with superfluous output neurons
        (``real_outputs`` C < O, ``model.output_size``) in eval mode only the real classes,
        ``(B, C)``, unless :meth:`all_outputs` is on (task inference)."""
        out = self.body(x)
        if self.real_outputs is not None and not (self.training or self.full_output):
            return out[:, : self.real_outputs]
        return out

    @contextlib.contextmanager
    def all_outputs(self) -> Iterator[None]:
        """Within the block, :meth:`forward` returns every output neuron in eval mode too."""
        before, self.full_output = self.full_output, True
        try:
            yield
        finally:
            self.full_output = before

    def masked_layers(self) -> list[MaskedLayer]:
        """The masked layers, in registration order (L of them)."""
        return [m for m in self.body.modules() if isinstance(m, MaskedLayer)]

    def num_weights(self) -> int:
        """Total number of masked weights: the bits of one binary mask of the network."""
        return sum(layer.weight.numel() for layer in self.masked_layers())

    def num_slots(self) -> int:
        """Number of score slots (the same in every layer)."""
        return len(self.masked_layers()[0].scores)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` after growing this network to the state's size: the
        score slots and ImpressLearn coefficient tensors that the tasks of the saved run added
        (a resumed run rebuilds the network with one slot). The added tensors are placeholders
        (drawn from a throwaway generator: the global random stream is untouched) that the
        load then overwrites.

        Returns:
            torch's ``(missing_keys, unexpected_keys)``.

        Raises:
            RuntimeError: as ``nn.Module.load_state_dict`` (``strict``: keys or shapes differ
                beyond the slots and coefficients grown here).
        """
        first = self.masked_layers()[0]
        name = next(n for n, m in self.named_modules() if m is first)
        slots = sum(1 for key in state_dict if key.startswith(f"{name}.scores."))
        while self.num_slots() < slots:
            self.add_slot(torch.Generator())
        while (key := f"coefficients.{len(self.coefficients)}") in state_dict:
            self.coefficients.append(nn.Parameter(
                torch.zeros_like(state_dict[key], device=first.weight.device)))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

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


def _build(body: nn.Module, cfg: SupermaskConfig, real_outputs: int | None = None) -> SupermaskNet:
    cfg.validate()
    return SupermaskNet(to_supermask(body, cfg), cfg.keep_fraction, real_outputs)


@MODELS.register("masked_mlp", config=MaskedMLPConfig)
def build_masked_mlp(cfg: MaskedMLPConfig, input_shape: tuple[int, ...],
                     num_classes: int) -> SupermaskNet:
    """The masked MLP for inputs of shape ``input_shape`` (e.g. ``(1, 28, 28)``), with
    ``model.output_size`` outputs (null: ``num_classes``).

    Raises:
        ConfigError: ``output_size`` smaller than ``num_classes``.
    """
    outputs = num_classes if cfg.output_size is None else cfg.output_size
    if outputs < num_classes:
        raise ConfigError(f"model.output_size={outputs} is smaller than the benchmark's "
                          f"{num_classes} classes")
    return _build(MLP(math.prod(input_shape), list(cfg.hidden_sizes), outputs), cfg,
                  num_classes if outputs > num_classes else None)


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
