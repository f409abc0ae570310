"""The models' config schemas and their registry, ``MODELS`` (no torch imported).

The networks live in :mod:`cl_runner.models.mlp`, :mod:`~cl_runner.models.resnet` and
:mod:`~cl_runner.models.supermask`, imported when one is built.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

from cl_runner.errors import ConfigError
from cl_runner.registry import Registry

#: name -> factory(cfg, input_shape: tuple[int, ...], num_classes: int) -> nn.Module
MODELS: Registry = Registry("model")


class MLPInit(str, enum.Enum):
    """How an MLP's linear layers start."""

    torch = "torch"  # PyTorch's nn.Linear default: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    xavier = "xavier"  # W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)); b = 0 (Mammoth's MLP)


@dataclass
class MLPConfig:
    """``model=mlp``: fully connected ReLU network.

    Attributes:
        hidden_sizes: widths of the hidden layers (the papers: 256, 256).
        dropout: dropout probability after each hidden layer (0 disables it).
        init: ``torch`` (default: PyTorch's ``nn.Linear`` initialization, which van de Ven's
            code also uses) or ``xavier`` (Glorot & Bengio 2010's uniform weights, zero biases:
            Mammoth's ``MNISTMLP``, the DER paper's Seq-MNIST network, ``backbone/__init__.py``
            ``xavier`` [R]); the ``seq_mnist_*`` presets of the DER protocol set it.
    """

    name: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    dropout: float = 0.0
    init: MLPInit = MLPInit.torch


@dataclass
class ResNet18ReducedConfig:
    """``model=resnet18_reduced``.

    Attributes:
        nf: width of the first stage; stages have nf, 2nf, 4nf, 8nf channels (papers: 20).
        num_blocks: BasicBlocks per stage (ResNet-18: [2, 2, 2, 2]).
        track_running_stats: false (authors' code): BatchNorm always uses batch statistics;
            true: standard running averages, used in eval mode.
        dropout: dropout probability after the first ReLU of every block (0 disables it).
    """

    name: str = "resnet18_reduced"
    nf: int = 20
    num_blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    track_running_stats: bool = False
    dropout: float = 0.0


class WeightInit(str, enum.Enum):
    """How the fixed weights are drawn (``model.weight_init``)."""

    signed_constant = "signed_constant"  # +-sigma, sigma = sqrt(2 / fan_in): SupSup's default
    kaiming_normal = "kaiming_normal"  # N(0, sigma^2)


class MaskRule(str, enum.Enum):
    """``model.mask_rule`` of the supermask models: how a score slot becomes a mask."""

    topk = "topk"  # the top keep_fraction of |scores| per layer
    threshold = "threshold"  # scores >= 0
    topk_signed = "topk_signed"  # the top keep_fraction of the signed scores


@dataclass
class SupermaskConfig:
    """Keys shared by the supermask models.

    Attributes:
        keep_fraction: k, the fraction of each layer's weights a top-k mask keeps (SupSup's
            code calls it ``sparsity``; the mask removes ``1 - k`` of the weights).
        weight_init: ``signed_constant`` (default) or ``kaiming_normal``.
        scale_fan: scale sigma as if fan_in were ``k * fan_in`` (edge-popup's ``scale_fan``,
            which keeps the activations' scale after masking); default false.
        mask_rule: ``topk`` (default): a slot's mask keeps the top ``keep_fraction`` of
            |scores| per layer (edge-popup; SupSup's GG experiments); ``threshold``: it keeps
            the weights whose score is >= 0 (SupSup's GNu experiments, ``GetSubnetFast`` in
            RAIVNLab/supsup ``models/module_util.py``); ``keep_fraction`` is then unused;
            ``topk_signed``: the top ``keep_fraction`` of the signed scores (``GetSubnet`` in
            the MNIST code of ImpressLearn's fork, dhrupadb/supsup ``mnist.py``).
    """

    is_supermask: ClassVar[bool] = True

    keep_fraction: float = 0.5
    weight_init: WeightInit = WeightInit.signed_constant
    scale_fan: bool = False
    mask_rule: MaskRule = MaskRule.topk

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of an out-of-range value."""
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ConfigError(f"model.keep_fraction must be in (0, 1], got {self.keep_fraction}")


@dataclass
class MaskedMLPConfig(SupermaskConfig):
    """``model=masked_mlp``: the MLP (``hidden_sizes``) as a supermask network: bias-free
    layers, fixed random weights, top-k masks (no dropout: nothing is trained but masks).

    Attributes:
        output_size: null (default): one output per class. A number larger than the
            benchmark's classes C: SupSup's superfluous neurons (its Permuted MNIST runs: 500
            outputs for FC 1024-1024, 100 for LeNet 300-100): the real classes are the first C
            outputs, training's cross-entropy and task inference see all of them, evaluation
            scores the first C (:class:`~cl_runner.models.supermask.SupermaskNet`).
    """

    name: str = "masked_mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    output_size: int | None = None

    def validate(self) -> None:
        super().validate()
        if self.output_size is not None and self.output_size < 1:
            raise ConfigError(f"model.output_size must be >= 1 or null, got {self.output_size}")


@dataclass
class MaskedResNet18ReducedConfig(SupermaskConfig):
    """``model=masked_resnet18_reduced``: the reduced ResNet-18 (``nf``, ``num_blocks``,
    BatchNorm with batch statistics unless ``track_running_stats``) with every convolution and
    the classifier masked, BatchNorm non-affine."""

    name: str = "masked_resnet18_reduced"
    nf: int = 20
    num_blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    track_running_stats: bool = False


MODELS.declare("mlp", config=MLPConfig, module="cl_runner.models.mlp")
MODELS.declare("resnet18_reduced", config=ResNet18ReducedConfig, module="cl_runner.models.resnet")
MODELS.declare("masked_mlp", config=MaskedMLPConfig, module="cl_runner.models.supermask")
MODELS.declare("masked_resnet18_reduced", config=MaskedResNet18ReducedConfig,
               module="cl_runner.models.supermask")
