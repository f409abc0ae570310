"""Train-time augmentation on whole batches of stored images (docs/design.md, principle 5):
random crop with zero padding and horizontal flip, the CIFAR protocol of the DER paper
(Buzzega et al., NeurIPS 2020; Mammoth ``datasets/seq_cifar10.py``: ``RandomCrop(32,
padding=4)``, ``RandomHorizontalFlip()``, then ``ToTensor`` and ``Normalize``).

The crop is one gather: the batch is zero-padded by p on each side, and example b's output
pixel (i, j) reads padded pixel ``(dy_b + i, dx_b + j)`` (flipped: ``dx_b + W - 1 - j``) with
offsets ``dy_b, dx_b`` drawn uniformly from ``0..2p`` (torchvision's ``RandomCrop`` offsets,
``randint(0, H + 2p - H + 1)``) and a flip with probability 1/2; offsets ``(p, p)`` without
flip give the image back unchanged. It runs on the stored dtype (uint8), so the zero padding
is a black pixel before any normalization, as torchvision pads the PIL image before
``ToTensor``/``Normalize``. No per-example Python, no host sync: the draws come from a
generator on the batch's device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, offsets: torch.Tensor, flip: torch.Tensor,
              padding: int) -> torch.Tensor:
    """Crop every image of ``x`` at its offsets from the zero-padded batch, flipping where
    ``flip``.

    Args:
        x: images ``(B, C, H, W)`` of any dtype.
        offsets: int64 ``(B, 2)``: row and column of each crop's top-left corner in the
            padded image, each in ``0..2*padding`` (``padding`` = no shift).
        flip: bool ``(B,)``: mirror the crop left-right.
        padding: p, zero pixels added on each side before cropping.

    Returns:
        ``(B, C, H, W)``, same dtype and device as ``x``: ``out[b, c, i, j] =
        pad(x)[b, c, offsets[b, 0] + i, offsets[b, 1] + (W - 1 - j if flip[b] else j)]``.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    dev = x.device
    rows = offsets[:, 0:1] + torch.arange(h, device=dev)  # (B, H)
    cols = torch.arange(w, device=dev).expand(b, w)
    cols = offsets[:, 1:2] + torch.where(flip[:, None], w - 1 - cols, cols)  # (B, W)
    return padded[torch.arange(b, device=dev)[:, None, None, None],
                  torch.arange(c, device=dev)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


class CropFlip:
    """Random crop (zero padding ``padding``) and horizontal flip of a training batch, drawn
    from ``generator`` (on the batch's device): ``augment(x, num_current) -> x'``.

    Args:
        padding: p (the DER protocol: 4).
        generator: a ``torch.Generator`` on the device of the batches (the loop seeds one per
            task from the run's generator, so a resumed run draws the same shifts).
        augment_replayed: augment every example of the batch (true: Mammoth's
            ``buffer.get_data(..., transform=self.transform)`` augments replayed examples
            too) or only the first ``num_current`` (the current task's stream; replayed
            examples appended by a strategy pass unchanged).
    """

    def __init__(self, padding: int, generator: torch.Generator, augment_replayed: bool = True):
        self.padding = padding
        self.generator = generator
        self.augment_replayed = augment_replayed

    def draw(self, batch: int, num_current: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets int64 ``(batch, 2)`` in ``0..2p`` and flips bool ``(batch,)`` for one batch;
        rows from ``num_current`` on get ``(p, p)`` and no flip when replayed examples are not
        augmented. Always draws for the whole batch (the stream of draws does not depend on
        how many examples are replayed)."""
        dev = self.generator.device
        offsets = torch.randint(0, 2 * self.padding + 1, (batch, 2), generator=self.generator,
                                device=dev)
        flip = torch.rand(batch, generator=self.generator, device=dev) < 0.5
        if not self.augment_replayed and num_current < batch:
            keep = torch.arange(batch, device=dev) >= num_current
            offsets = offsets.masked_fill(keep[:, None], self.padding)
            flip = flip & ~keep
        return offsets, flip

    def __call__(self, x: torch.Tensor, num_current: int) -> torch.Tensor:
        """The augmented batch ``(B, C, H, W)`` (a new tensor; ``x`` is not changed)."""
        offsets, flip = self.draw(len(x), num_current)
        return crop_flip(x, offsets, flip, self.padding)
