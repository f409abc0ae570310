"""Benchmarks: rotation and permutation correctness, task construction, missing-data errors."""

from __future__ import annotations

import pytest
import torch

from cl_runner.data.mnist import (
    PermutedMNIST,
    PermutedMNISTConfig,
    RotatedMNIST,
    RotatedMNISTConfig,
    permute_pixels,
    rotate,
)
from cl_runner.data.sources import MNIST_FILES, load_mnist
from cl_runner.errors import ConfigError, DatasetNotFoundError

CPU = torch.device("cpu")


def random_images(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)


def test_four_quarter_turns_give_back_the_image():
    x = random_images()
    y = x
    for _ in range(4):
        y = rotate(y, 90.0)
    assert torch.equal(y, x)


def test_quarter_turn_is_counter_clockwise():
    x = random_images()
    assert torch.equal(rotate(x, 90.0), torch.rot90(x, 1, dims=(2, 3)))


def test_rotation_keeps_dtype_and_fills_corners_with_zero():
    x = torch.full((2, 1, 28, 28), 255, dtype=torch.uint8)
    y = rotate(x, 45.0)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    assert y[0, 0, 0, 0] == 0 and y[0, 0, 14, 14] == 255


def test_permutation_moves_pixels_as_specified():
    x = random_images()
    perm = torch.randperm(784, generator=torch.Generator().manual_seed(3))
    y = permute_pixels(x, perm)
    assert torch.equal(y.flatten(1), x.flatten(1)[:, perm])
    inverse = torch.argsort(perm)
    assert torch.equal(permute_pixels(y, inverse), x)


@pytest.fixture(scope="module")
def small_cfgs():
    common = dict(num_tasks=4, train_samples_per_task=300)
    return RotatedMNISTConfig(**common), PermutedMNISTConfig(**common)


def test_rotated_mnist_tasks(mnist_root, small_cfgs):
    bench = RotatedMNIST(small_cfgs[0], str(mnist_root), False, seed=1, device=CPU)
    assert bench.angles == [0.0, 9.0, 18.0, 27.0]
    x1, y1 = bench.train_data(1)
    x3, y3 = bench.train_data(3)
    assert x1.shape == (300, 1, 28, 28) and x1.dtype == torch.uint8 and y1.dtype == torch.int64
    # the same seeded subset for the same task, another for another task
    assert torch.equal(bench.train_data(3)[0], x3)
    assert not torch.equal(y1, y3)
    # test set of task t = MNIST test set rotated by (t-1)*9 degrees
    tx1, ty1 = bench.test_data(1)
    tx3, ty3 = bench.test_data(3)
    assert tx1.shape == (10_000, 1, 28, 28) and torch.equal(ty1, ty3)
    assert torch.equal(tx3, rotate(tx1, 18.0))
    frame = bench.artifacts()["angles.csv"]
    assert list(frame["angle_degrees"]) == [0.0, 9.0, 18.0, 27.0]
    inputs = bench.to_input(x1[:5])
    assert inputs.dtype == torch.float32 and 0.0 <= inputs.min() and inputs.max() <= 1.0


def test_rotated_mnist_explicit_angles(mnist_root):
    cfg = RotatedMNISTConfig(num_tasks=2, train_samples_per_task=10, angles=[0.0, 90.0])
    bench = RotatedMNIST(cfg, str(mnist_root), False, seed=1, device=CPU)
    assert torch.equal(bench.test_data(2)[0], torch.rot90(bench.test_data(1)[0], 1, dims=(2, 3)))
    with pytest.raises(ConfigError, match="angles"):
        RotatedMNIST(RotatedMNISTConfig(num_tasks=3, angles=[0.0]), str(mnist_root), False, 1, CPU)


def test_permuted_mnist_is_a_bijection_fixed_by_the_seed(mnist_root, small_cfgs):
    a = PermutedMNIST(small_cfgs[1], str(mnist_root), False, seed=5, device=CPU)
    b = PermutedMNIST(small_cfgs[1], str(mnist_root), False, seed=5, device=CPU)
    c = PermutedMNIST(small_cfgs[1], str(mnist_root), False, seed=6, device=CPU)
    assert torch.equal(a.permutations[0], torch.arange(784))  # task 1 unpermuted
    for perm in a.permutations:
        assert torch.equal(torch.sort(perm).values, torch.arange(784))
    assert torch.equal(a.permutations, b.permutations)
    assert not torch.equal(a.permutations[1:], c.permutations[1:])
    assert not torch.equal(a.permutations[1], a.permutations[2])
    x1, _ = a.test_data(1)
    x2, _ = a.test_data(2)
    assert torch.equal(x2.flatten(1), x1.flatten(1)[:, a.permutations[1]])
    assert a.artifacts()["permutations.csv"].shape == (4, 785)


def test_missing_mnist_error_names_folder_files_and_env_var(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    msg = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert all(name in msg for name in MNIST_FILES)
    assert "CL_RUNNER_DATA" in msg


def test_bad_benchmark_values_rejected(mnist_root):
    with pytest.raises(ConfigError, match="benchmark.batch_size"):
        RotatedMNIST(RotatedMNISTConfig(batch_size=0), str(mnist_root), False, 1, CPU)
    with pytest.raises(ConfigError, match="train_samples_per_task"):
        RotatedMNIST(RotatedMNISTConfig(train_samples_per_task=70_000), str(mnist_root), False, 1, CPU)


@pytest.mark.parametrize("angle", [0.0, 1.0, 9.0, 18.0, 33.0, 45.0, 89.5, 90.0, 123.4, 180.0,
                                   200.0, 270.0, 333.0, -13.0, 720.0 + 9.0])
def test_rotation_by_gather_equals_torchvision_rotate(angle):
    """rotate() gathers pixels through a precomputed index (issue 32): byte-identical to
    torchvision's nearest-neighbour rotate of the whole batch, corners and all."""
    from torchvision.transforms.v2 import functional as TF

    x = random_images(n=64, seed=int(angle * 10) % 1000)
    x[:, :, 0, :] = 255  # bright border: a misplaced fill pixel would show
    expected = TF.rotate(x, angle, interpolation=TF.InterpolationMode.NEAREST, fill=0)
    assert torch.equal(rotate(x, angle), expected)
