"""Reduced ResNet-18 for Split CIFAR-100 (Lopez-Paz & Ranzato, GEM, NeurIPS 2017; used by
Mirzadeh et al. 2020 and 2021, docs/papers.md "Models").

Architecture (``nf`` = 20 by default, channels nf-2nf-4nf-8nf = 20-40-80-160), following the
MC-SGD authors' code (CL-LinearModeConnectivity, ``core/models.py``):

    conv3x3(3 -> nf) -> BN -> ReLU
    -> 4 stages of BasicBlocks ([2, 2, 2, 2]; strides 1, 2, 2, 2)
    -> 4x4 average pool -> flatten -> Linear(8nf -> num_classes)

BasicBlock(in, out, stride): ``relu(bn2(conv2(drop(relu(bn1(conv1(x)))))) + shortcut(x))``, all
convolutions without bias; the shortcut is the identity, or, when the stride or the width
changes, a 1x1 strided convolution followed by a BatchNorm *without* affine parameters (as in
the authors' code).

BatchNorm: the authors build every BatchNorm with ``track_running_stats=False``, so the network
normalizes with the statistics of the current batch in training *and* in evaluation (no running
averages: nothing from earlier tasks is carried in BN buffers, and a test score depends on the
evaluation batch; the runner evaluates each 500-image CIFAR task test set as one batch with the
default ``eval_batch_size`` 1000). ``model.track_running_stats=true`` gives standard BatchNorm
(running averages, used in eval mode). Dropout (``model.dropout``, default 0) sits after the
first ReLU of each block, for the Stable SGD regime; the authors' MC-SGD model has none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.errors import ConfigError
from cl_runner.models.schemas import MODELS, ResNet18ReducedConfig


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias."""
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection.

    Input ``(B, c_in, H, W)`` -> output ``(B, c_out, H / stride, W / stride)``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, track_running_stats: bool,
                 dropout: float) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out, track_running_stats=track_running_stats)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out, track_running_stats=track_running_stats)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(c_out, affine=False, track_running_stats=track_running_stats),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop(F.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18Reduced(nn.Module):
    """The reduced ResNet-18 (see the module docstring).

    Input: float ``(B, C, 32, 32)`` (CIFAR: C = 3; any H, W multiple of 32 works, the pooled
    map is then flattened); output: logits ``(B, num_classes)``. No masking here: the
    task-incremental mask is applied by the caller (:mod:`cl_runner.data.masking`).
    ``forward(x) == head(features(x))`` (:meth:`features`, :attr:`head`).
    """

    def __init__(self, in_channels: int, num_classes: int, nf: int = 20,
                 num_blocks: tuple[int, ...] = (2, 2, 2, 2), track_running_stats: bool = False,
                 dropout: float = 0.0, pooled_size: int = 1) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")
        if nf < 1 or len(num_blocks) != 4 or min(num_blocks) < 1:
            raise ConfigError(f"model.nf must be >= 1 and model.num_blocks 4 positive counts, "
                              f"got nf={nf}, num_blocks={list(num_blocks)}")
        self.conv1 = conv3x3(in_channels, nf)
        self.bn1 = nn.BatchNorm2d(nf, track_running_stats=track_running_stats)
        stages = []
        c_in = nf
        for i, (blocks, stride) in enumerate(zip(num_blocks, (1, 2, 2, 2), strict=True)):
            c_out = nf * 2**i
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(c_in, c_out, stride if b == 0 else 1,
                                         track_running_stats, dropout))
                c_in = c_out
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(c_in * pooled_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature extractor: the pooled, flattened last stage, ``(B, 8 nf * pooled)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)
        return out.flatten(1)

    @property
    def head(self) -> nn.Linear:
        """The output layer (features -> logits)."""
        return self.linear


@MODELS.register("resnet18_reduced", config=ResNet18ReducedConfig)
def build_resnet18_reduced(cfg: ResNet18ReducedConfig, input_shape: tuple[int, ...],
                           num_classes: int) -> ResNet18Reduced:
    """Build a :class:`ResNet18Reduced` for images of shape ``input_shape`` = ``(C, H, W)``.

    Raises:
        ConfigError: ``input_shape`` is not an image whose height and width are multiples of
            32 (e.g. MNIST's ``(1, 28, 28)``): the network downsamples by 8 and pools 4x4.
    """
    if len(input_shape) != 3 or input_shape[1] % 32 or input_shape[2] % 32:
        raise ConfigError(
            f"model=resnet18_reduced needs image inputs (C, H, W) with H and W multiples of 32 "
            f"(CIFAR: 3x32x32); this benchmark gives {tuple(input_shape)}. Use model=mlp for MNIST."
        )
    c, h, w = input_shape
    return ResNet18Reduced(c, num_classes, cfg.nf, tuple(cfg.num_blocks), cfg.track_running_stats,
                           cfg.dropout, pooled_size=(h // 32) * (w // 32))
