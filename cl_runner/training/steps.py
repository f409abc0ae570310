"""The pieces every training phase is made of: seeded shuffles, batches as index slices, and
the (masked) classification loss. The loop's continual phase and strategies' own phases
(MC-SGD's line phase) use the same helpers, run through :class:`~cl_runner.training.hooks.PhaseRunner`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cl_runner.data.masking import mask_logits


def shuffled(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A random order of ``0..n-1`` drawn from the CPU ``generator``: int64 ``(n,)`` on
    ``device`` (drawn on the CPU so the sequence is the same on every device)."""
    return torch.randperm(n, generator=generator).to(device)


def batch_slice(order: torch.Tensor, step: int, batch_size: int) -> torch.Tensor:
    """Indices of batch ``step`` (0-based) of an epoch over ``order``: ``order[step*B:(step+1)*B]``
    (the last batch of an epoch may be shorter). int64 ``(<=B,)``."""
    return order[step * batch_size : (step + 1) * batch_size]


def cyclic_batch(order: torch.Tensor, step: int, batch_size: int) -> torch.Tensor:
    """Indices of batch ``step`` when ``order`` is read as a cycle: positions
    ``step*B .. step*B+B-1`` modulo ``len(order)``; all of ``order`` when it is shorter than B.
    For phases that run more steps than a data set has batches (MC-SGD's line phase cycles its
    smaller term). int64 ``(min(B, len(order)),)``."""
    return order.roll(-step * batch_size)[:batch_size]


def classification_loss(logits: torch.Tensor, y: torch.Tensor,
                        allowed: torch.Tensor | None) -> torch.Tensor:
    """Mean cross-entropy (nats) of ``logits`` float ``(B, C)`` against ``y`` int64 ``(B,)``,
    over the allowed classes only when ``allowed`` (bool ``(C,)`` or ``(B, C)``,
    task-incremental masks of :mod:`cl_runner.data.masking`) is given."""
    if allowed is not None:
        logits = mask_logits(logits, allowed)
    return F.cross_entropy(logits, y)


#: largest float copy of a task's training inputs the loop keeps (bytes): above it (e.g.
#: multitask's union of many tasks) the step converts each batch instead
MAX_TASK_INPUT_BYTES = 512 * 2**20
#: images converted per call in :func:`task_inputs` (bounds the temporary float tensor)
INPUT_CHUNK = 4096


def task_inputs(x: torch.Tensor, to_input, out: torch.Tensor | None = None) -> torch.Tensor | None:
    """A task's stored training inputs converted to model inputs once, for the whole task.

    Converts ``x`` (``(N, *input_shape)``, stored dtype) chunk by chunk with ``to_input`` (an
    elementwise map, so row i equals ``to_input(x[i:i+1])`` bit for bit) into ``out`` when
    ``out`` has the right shape, dtype and device (the previous task's buffer: reusing it
    avoids page-faulting a fresh ~188 MB allocation per Rotated MNIST task), else into a new
    tensor. The step then gathers float rows as a bare PyTorch loop does (issue 32).

    Returns:
        The model inputs ``(N, *input_shape)`` (float), or None when the float copy would
        exceed :data:`MAX_TASK_INPUT_BYTES` or ``x`` is empty (the caller converts per batch).
    """
    if len(x) == 0:
        return None
    first = to_input(x[:INPUT_CHUNK])
    if first.element_size() * first[0].numel() * len(x) > MAX_TASK_INPUT_BYTES:
        return None
    shape = (len(x), *first.shape[1:])
    if out is None or out.shape != shape or out.dtype != first.dtype or out.device != first.device:
        out = torch.empty(shape, dtype=first.dtype, device=first.device)
    out[: len(first)] = first
    for start in range(INPUT_CHUNK, len(x), INPUT_CHUNK):
        out[start : start + INPUT_CHUNK] = to_input(x[start : start + INPUT_CHUNK])
    return out
