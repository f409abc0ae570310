"""Train-time augmentation (cl_runner/data/augment.py, ``benchmark.train_augmentation``):
the batched crop + flip against hand-computed and per-example reference crops, its draws from
a seeded generator, replayed examples left alone on request, no augmentation at evaluation,
default off (no draw from the run's generator), and a byte-identical resume."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from cl_runner.data import augment as augment_mod
from cl_runner.data.augment import CropFlip, crop_flip
from cl_runner.dispatch import resolve
from cl_runner.errors import ConfigError
from cl_runner.experiment import run_experiment
from tests.conftest import compose_run, run_crashing_after_task, tiny_run_cfg
from tests.test_resume import result_bytes

IMAGE = torch.arange(1, 10, dtype=torch.uint8).view(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]


@pytest.mark.parametrize("offsets, flip, want", [
    ((1, 1), False, [[1, 2, 3], [4, 5, 6], [7, 8, 9]]),  # centred: the image itself
    ((0, 0), False, [[0, 0, 0], [0, 1, 2], [0, 4, 5]]),  # shifted down-right, zeros enter
    ((2, 2), False, [[5, 6, 0], [8, 9, 0], [0, 0, 0]]),
    ((0, 2), False, [[0, 0, 0], [2, 3, 0], [5, 6, 0]]),
    ((1, 1), True, [[3, 2, 1], [6, 5, 4], [9, 8, 7]]),  # flip only: the mirror image
    ((2, 0), True, [[5, 4, 0], [8, 7, 0], [0, 0, 0]]),  # crop (rows 1.., cols 0..2 of pad) then mirror
])
def test_crop_flip_hand_computed(offsets, flip, want):
    out = crop_flip(IMAGE, torch.tensor([offsets]), torch.tensor([flip]), padding=1)
    assert out.dtype == torch.uint8 and out[0, 0].tolist() == want


def reference(x: torch.Tensor, offsets: torch.Tensor, flip: torch.Tensor, p: int) -> torch.Tensor:
    """Per-example crops written the slow, obvious way (torchvision's RandomCrop on a padded
    image, then RandomHorizontalFlip)."""
    padded = F.pad(x, (p, p, p, p))
    h, w = x.shape[-2:]
    out = []
    for b in range(len(x)):
        dy, dx = offsets[b].tolist()
        crop = padded[b, :, dy:dy + h, dx:dx + w]
        out.append(crop.flip(-1) if flip[b] else crop)
    return torch.stack(out)


def test_seeded_draws_match_the_per_example_reference_and_their_law():
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    aug = CropFlip(4, torch.Generator().manual_seed(123))
    out = aug(x, num_current=64)
    # the same seed gives the same draws: offsets first, then the flips
    gen = torch.Generator().manual_seed(123)
    offsets = torch.randint(0, 9, (64, 2), generator=gen)
    flip = torch.rand(64, generator=gen) < 0.5
    assert torch.equal(out, reference(x, offsets, flip, 4))
    assert torch.equal(x[flip.logical_not() & (offsets == 4).all(1)],
                       out[flip.logical_not() & (offsets == 4).all(1)])
    # the law: offsets uniform on 0..2p, flips with probability 1/2 (20,000 draws)
    offsets, flip = CropFlip(4, torch.Generator().manual_seed(5)).draw(20_000, 20_000)
    counts = torch.bincount(offsets.flatten(), minlength=9).double() / offsets.numel()
    assert offsets.min() == 0 and offsets.max() == 8
    assert torch.allclose(counts, torch.full((9,), 1 / 9, dtype=torch.double), atol=0.01)
    assert abs(flip.double().mean().item() - 0.5) < 0.015


def test_flip_exactly_mirrors_and_replayed_rows_can_stay_untouched():
    x = torch.randint(0, 256, (6, 3, 5, 7), dtype=torch.uint8)
    centred = torch.full((6, 2), 2)
    assert torch.equal(crop_flip(x, centred, torch.ones(6, dtype=torch.bool), 2), x.flip(-1))
    assert torch.equal(crop_flip(x, centred, torch.zeros(6, dtype=torch.bool), 2), x)
    aug = CropFlip(2, torch.Generator().manual_seed(0), augment_replayed=False)
    offsets, flip = aug.draw(6, num_current=4)
    assert (offsets[4:] == 2).all() and not flip[4:].any()
    out = CropFlip(2, torch.Generator().manual_seed(0), augment_replayed=False)(x, 4)
    assert torch.equal(out[4:], x[4:]) and not torch.equal(out[:4], x[:4])


def test_default_off_draws_nothing_and_bad_padding_is_refused(cifar10_root):
    run = compose_run(["benchmark=split_cifar10", f"data.root={cifar10_root}",
                       "benchmark.verify_checksums=false"])
    assert run.benchmark.train_augmentation.value == "none"
    from cl_runner.data.cifar import SplitCIFAR10

    bench = SplitCIFAR10(run.benchmark, str(cifar10_root), False, seed=1,
                         device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(7)
    state = gen.get_state()
    assert bench.train_augmenter(gen) is None and torch.equal(gen.get_state(), state)
    with pytest.raises(ConfigError, match="benchmark.crop_padding must be >= 0"):
        resolve_bad = compose_run(["benchmark=split_cifar10", "benchmark.crop_padding=-1"])
        resolve_bad.benchmark.validate()


AUG = ["benchmark.train_augmentation=crop_flip", "benchmark.epochs_per_task=2"]


def test_augmentation_trains_only_and_changes_the_result(request, tmp_path, monkeypatch):
    """Every crop call is a training batch (batch size 10, the steps of the run), none is an
    evaluation pass (test sets of 8 images at batch 1000), and the augmented run differs from
    the plain one."""
    calls = []
    original = augment_mod.crop_flip

    def spy(x, offsets, flip, padding):
        calls.append(len(x))
        return original(x, offsets, flip, padding)

    monkeypatch.setattr(augment_mod, "crop_flip", spy)
    extra = ["benchmark.batch_size=10", *AUG]
    augmented = run_experiment(resolve(tiny_run_cfg(request, "naive", "split_cifar10", extra)),
                               tmp_path / "aug")
    assert json.loads((tmp_path / "aug" / "summary.json").read_text())["status"] == "complete"
    assert calls == [10] * 8  # 2 tasks x 2 epochs x 2 batches of 10 (20 images per task)
    plain = run_experiment(resolve(tiny_run_cfg(request, "naive", "split_cifar10",
                                                ["benchmark.batch_size=10",
                                                 "benchmark.epochs_per_task=2"])),
                           tmp_path / "plain")
    assert augmented["average_accuracy"] != plain["average_accuracy"] or (
        result_bytes(tmp_path / "aug") != result_bytes(tmp_path / "plain"))


def test_augmented_replay_run_resumes_byte_identical(request, tmp_path, monkeypatch):
    def fresh():
        return resolve(tiny_run_cfg(request, "derpp", "split_cifar10", AUG))

    run_experiment(fresh(), tmp_path / "whole")
    run_crashing_after_task(monkeypatch, fresh(), tmp_path / "split")
    summary = run_experiment(fresh(), tmp_path / "split")
    assert summary["status"] == "complete" and summary["resumed_after_task"] == 1
    assert result_bytes(tmp_path / "split") == result_bytes(tmp_path / "whole")
