"""``model.init``: PyTorch's default or Mammoth's Xavier-uniform start for the MLP, and the
DER-protocol presets that use the latter."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from cl_runner.cli import CONF_DIR
from cl_runner.models.mlp import MLP
from tests.conftest import compose_run


def test_xavier_start_has_glorot_bounds_variance_and_zero_biases():
    torch.manual_seed(0)
    model = MLP(784, [100, 100], 10, init="xavier")
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(100, 784), (100, 100), (10, 100)]
    for layer, (fan_in, fan_out) in zip(linears, [(784, 100), (100, 100), (100, 10)], strict=True):
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # 784 -> 100: sqrt(6 / 884) = 0.08239
        w = layer.weight.detach()
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.97 * bound  # the draw fills the interval
        # U(-a, a) has variance a^2 / 3; 1,000 to 78,400 draws per layer
        assert w.var().item() == pytest.approx(bound**2 / 3, rel=0.15 if w.numel() < 2000 else 0.03)
        assert torch.count_nonzero(layer.bias) == 0
    assert math.isclose(math.sqrt(6.0 / 884), 0.082385, rel_tol=1e-4)


def test_torch_start_is_pytorchs_linear_default_draw_for_draw():
    torch.manual_seed(3)
    model = MLP(784, [100, 100], 10)
    torch.manual_seed(3)
    reference = [nn.Linear(784, 100), nn.Linear(100, 100), nn.Linear(100, 10)]
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    for ours, ref in zip(linears, reference, strict=True):
        assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)
    assert any(torch.count_nonzero(m.bias) for m in linears)  # PyTorch's biases are not zero


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="model.init"):
        MLP(784, [10], 10, init="he")


def test_der_protocol_presets_start_as_mammoths_mlp_and_van_de_vens_as_pytorch():
    experiments = Path(CONF_DIR) / "experiment"
    seq = sorted(p.stem for p in experiments.glob("seq_mnist_*.yaml"))
    assert len(seq) >= 20
    for name in seq:
        want = "torch" if name == "seq_mnist_gdumb" else "xavier"  # GDumb's own network
        assert compose_run([f"+experiment={name}"]).model.init.value == want, name
    for path in experiments.glob("split_mnist_*.yaml"):
        assert compose_run([f"+experiment={path.stem}"]).model.init.value == "torch", path.stem
    assert compose_run([]).model.init.value == "torch"  # the schema's default, unchanged
