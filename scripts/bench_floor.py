"""The bare PyTorch loop that ``make bench`` (scripts/bench.py) and the GPU script
(scripts/bench_gpu_parts.py) compare the runner with: one definition, so both floors do the
same work."""

from __future__ import annotations


def sgd_floor(model, x, y, tasks: int, generator, device=None) -> int:
    """Train ``model`` in place with plain SGD (lr 0.01, momentum 0.8, a new optimizer per
    task), batch 10, one epoch per task over ``x`` float ``(N, ...)`` / ``y`` int64 ``(N,)``
    (already on ``device``), each epoch in an order drawn on the CPU from ``generator``:
    the naive run's steps without anything else. Returns the number of steps
    (``tasks * ceil(N / 10)``)."""
    import torch
    import torch.nn.functional as F

    n, steps = len(y), 0
    for _ in range(tasks):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.8)
        order = torch.randperm(n, generator=generator).to(device or y.device)
        for s in range(0, n, 10):
            idx = order[s : s + 10]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    return steps
