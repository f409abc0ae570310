"""Where a Seq-MNIST training step spends its time, part by part (issue 29's speed criterion:
"say where each spends its time" for a strategy above 1.5x naive per step).

``scripts/bench.py --only seq:...`` times whole runs; this script times the pieces a step is
made of, each alone, with ``torch.utils.benchmark`` (median of its blocked autorange, in
microseconds, one torch thread, CPU): the network's step (forward, cross-entropy, backward,
SGD update of the MLP 784-100-100-10 of the ``seq_mnist_*`` presets) at 10, 20 and 30 examples,
and each strategy's own work per step with the runner's own code (the reservoir buffer's
``add`` and ``sample``, the teacher's forward pass and the distillation terms, ER-ACE's class
sets and asymmetric loss, online EWC's penalty forward and backward, DER's logit term). The
parts are measured apart, so their sum is an estimate of a step, not a measurement of one.

Usage: python scripts/seq_step_parts.py [--min-run-time 0.5]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from cl_runner.models.mlp import MLP
from cl_runner.strategies.er_ace import asymmetric_loss, present_classes
from cl_runner.strategies.ewc import EWC, flat_params
from cl_runner.strategies.lwf import distillation_loss
from cl_runner.strategies.memory import ReservoirBuffer
from cl_runner.strategies.schemas import EWCConfig


def timed(stmt: str, env: dict, min_run_time: float) -> float:
    """Median microseconds of ``stmt`` run with the names of ``env``."""
    return Timer(stmt, globals=env, num_threads=1).blocked_autorange(
        min_run_time=min_run_time).median * 1e6


def parts(min_run_time: float) -> dict[str, float]:
    """Microseconds of each part (see the module docstring), keyed by name."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = MLP(784, [100, 100], 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.03)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    x_u8 = torch.randint(0, 256, (30, 784), dtype=torch.uint8, generator=gen)
    x = x_u8.float() / 255
    y = torch.randint(0, 10, (30,), generator=gen)

    def step(n: int, extra=None, loss_fn=None) -> None:
        out = model(x[:n])
        loss = F.cross_entropy(out, y[:n]) if loss_fn is None else loss_fn(out)
        if extra is not None:
            loss = loss + extra(out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    buffers = {}
    for cap in (200, 500):
        buf = ReservoirBuffer(cap, torch.Generator().manual_seed(1))
        logit_buf = ReservoirBuffer(cap, torch.Generator().manual_seed(1))
        for _ in range(cap // 10 + 5):  # full, as after the first task's first steps
            buf.add(x_u8[:10], y[:10], 1)
            logit_buf.add(x_u8[:10], y[:10], 1, torch.zeros(10, 10))
        buffers[cap] = (buf, logit_buf)

    ewc = EWC(EWCConfig(mode="online", ewc_lambda=180.0))
    with torch.no_grad():
        ewc.add_task(torch.rand(flat_params(model).numel()), flat_params(model).clone())
    seen = torch.zeros(10, dtype=torch.bool)

    def ace(out: torch.Tensor) -> torch.Tensor:
        """ER-ACE's per-step class sets and loss (``ERACE.loss``, variant ``paper``)."""
        present = present_classes(y[:10], 10)
        classes = seen | present
        return asymmetric_loss(out, y[:20], 10, present, classes)
    env = dict(step=step, x=x, x_u8=x_u8, y=y, model=model, teacher=teacher, torch=torch, F=F,
               buffers=buffers, distillation_loss=distillation_loss, ewc=ewc,
               ace=ace)
    stmts = {
        "step, 10 examples (naive)": "step(10)",
        "step, 20 examples": "step(20)",
        "step, 30 examples": "step(30)",
        "reservoir add 10, capacity 200": "buffers[200][0].add(x_u8[:10], y[:10], 2)",
        "reservoir add 10, capacity 500": "buffers[500][0].add(x_u8[:10], y[:10], 2)",
        "reservoir sample 10 of 200": "buffers[200][0].sample(10)",
        "reservoir sample 10 of 500": "buffers[500][0].sample(10)",
        "uint8 to float, 10 replayed": "x_u8[:10].float().div_(255)",
        "concatenate batch and replay (x, y)": "torch.cat([x[:10], x[10:20]]); torch.cat([y[:10], y[10:20]])",
        "teacher forward 10 (no_grad)": "with torch.no_grad(): teacher(x[:10])",
        "step 10 + LwF distillation (teacher included)":
            "step(10, lambda out: distillation_loss(out, teacher(x[:10]).detach(), 2.0))",
        "step 20, ER-ACE's loss instead of the cross-entropy": "step(20, loss_fn=ace)",
        "step 10 + online EWC penalty": "step(10, lambda out: ewc.penalty(model))",
        "step 20 + DER logit MSE on 10": "step(20, lambda out: F.mse_loss(out[10:], out[:10].detach()))",
    }
    return {name: timed(stmt, env, min_run_time) for name, stmt in stmts.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-run-time", type=float, default=0.5,
                        help="seconds of repeated runs per part (default 0.5)")
    parser.add_argument("--json", help="also write the microseconds to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = parts(args.min_run_time)
    width = max(map(len, result))
    for name, us in result.items():
        print(f"{name:<{width}}  {us:8.1f} us")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
