"""The reduced ResNet-18 of the MC-SGD paper's Split CIFAR-100 runs (docs/papers.md, Protocol):
parameter count, output shape, a learning step, the BatchNorm switch, input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cl_runner.errors import ConfigError
from cl_runner.models.resnet import ResNet18Reduced, ResNet18ReducedConfig, build_resnet18_reduced

# ---------------------------------------------------------------- the reduced ResNet-18

def expected_parameter_count(nf: int, num_classes: int, in_channels: int = 3) -> int:
    """By hand from the architecture: 3x3 convs without bias, BatchNorm weight + bias (2 per
    channel), 1x1 shortcut convs with a non-affine BatchNorm (0 parameters), linear + bias."""
    conv3 = lambda c_in, c_out: 9 * c_in * c_out  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    total = conv3(in_channels, nf) + bn(nf)
    c_in = nf
    for stage in range(4):
        c = nf * 2**stage
        for _ in range(2):
            total += conv3(c_in, c) + bn(c) + conv3(c, c) + bn(c)
            if c_in != c:  # first block of stages 2-4 (stride 2, wider)
                total += c_in * c  # 1x1 shortcut
            c_in = c
    return total + c_in * num_classes + num_classes


def test_resnet18_reduced_parameter_count_and_output_shape():
    model = build_resnet18_reduced(ResNet18ReducedConfig(), (3, 32, 32), 100)
    n = sum(p.numel() for p in model.parameters())
    assert n == expected_parameter_count(20, 100) == 1_108_680
    assert [m.out_channels for m in (model.layer1[0].conv1, model.layer2[0].conv1,
                                     model.layer3[0].conv1, model.layer4[0].conv1)] == [20, 40, 80, 160]
    out = model(torch.rand(3, 3, 32, 32))
    assert out.shape == (3, 100)
    # the authors' BatchNorm: no running statistics (no buffers)
    assert not any(name.endswith("running_mean") for name, _ in model.named_buffers())


def test_one_sgd_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = ResNet18Reduced(3, 100)
    x, y = torch.rand(10, 3, 32, 32), torch.randint(0, 100, (10,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert F.cross_entropy(model(x), y) < loss.detach()


def test_batchnorm_switch():
    """track_running_stats=false: eval output of an image depends on its batch; true: not."""
    torch.manual_seed(0)
    x = torch.rand(6, 3, 32, 32)
    for track, depends in ((False, True), (True, False)):
        model = ResNet18Reduced(3, 10, nf=4, track_running_stats=track).eval()
        with torch.no_grad():
            alone, in_batch = model(x[:2]), model(x)[:2]
        assert (not torch.allclose(alone, in_batch, atol=1e-5)) == depends
        assert any(n.endswith("running_mean") for n, _ in model.named_buffers()) == track


def test_resnet_refuses_non_image_inputs():
    with pytest.raises(ConfigError, match=r"\(1, 28, 28\)"):
        build_resnet18_reduced(ResNet18ReducedConfig(), (1, 28, 28), 10)
    with pytest.raises(ConfigError, match="dropout"):
        ResNet18Reduced(3, 10, dropout=1.0)
