"""Multi-layer perceptron used on the MNIST benchmarks."""

from __future__ import annotations

import math

import torch
from torch import nn

from cl_runner.models.schemas import MODELS, MLPConfig


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU -> Dropout] x len(hidden_sizes) -> Linear.

    Input: float tensor of shape ``(B, *input_shape)``; output: logits ``(B, num_classes)``.
    Architecture of Mirzadeh et al. 2020/2021 (784-256-256-10 on MNIST). ``init``: ``"torch"``
    (PyTorch's ``nn.Linear`` default) or ``"xavier"`` (:func:`xavier_uniform_zero_bias` on every
    linear layer, Mammoth's ``MNISTMLP``); anything else raises ``ValueError``, as does a
    dropout outside [0, 1).

    Feature extractor and head (iCaRL's nearest mean of exemplars): ``forward(x) ==
    head(features(x))``; :meth:`features` gives the last hidden layer ``(B, hidden_sizes[-1])``
    (after its ReLU and dropout), :attr:`head` is the output ``nn.Linear``.
    """

    def __init__(self, input_dim: int, hidden_sizes: list[int], num_classes: int, dropout: float = 0.0,
                 init: str = "torch"):
        super().__init__()
        if init not in ("torch", "xavier"):
            raise ValueError(f"model.init must be torch or xavier, got {init!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_dim
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
        if init == "xavier":
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    xavier_uniform_zero_bias(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature extractor: every layer but the head, ``(B, D)`` float."""
        return self.net[:-1](x)

    @property
    def head(self) -> nn.Linear:
        """The output layer (features -> logits)."""
        return self.net[-1]


def xavier_uniform_zero_bias(layer: nn.Linear) -> None:
    """Re-initialize ``layer`` in place: weight ``(out, in)`` ~ U(-a, a) with
    ``a = sqrt(6 / (in + out))`` (Glorot & Bengio 2010, Eq. 16; what Mammoth's ``xavier`` does
    for its ``MNISTMLP``), bias 0. Draws from the global torch generator, as PyTorch's own
    initialization does."""
    fan_out, fan_in = layer.weight.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
        if layer.bias is not None:
            layer.bias.zero_()


@MODELS.register("mlp", config=MLPConfig)
def build_mlp(cfg: MLPConfig, input_shape: tuple[int, ...], num_classes: int) -> MLP:
    """Build an :class:`MLP` for inputs of shape ``input_shape`` (e.g. ``(1, 28, 28)``)."""
    init = cfg.init.value if hasattr(cfg.init, "value") else str(cfg.init)
    return MLP(math.prod(input_shape), list(cfg.hidden_sizes), num_classes, cfg.dropout, init)
