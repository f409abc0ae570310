"""Stable SGD (Mirzadeh, Farajtabar, Pascanu, Ghasemzadeh, "Understanding the Role of Training
Regimes in Continual Learning", NeurIPS 2020, arXiv 2006.06958; docs/papers.md, Baselines; MC-SGD
paper, Table 1 "Stable SGD").

Stable SGD is not a different algorithm but a training regime for plain fine-tuning: dropout,
a larger initial learning rate decayed per task (``lr_t = lr * gamma^(t-1)``), and a batch size
chosen with them. Here it is the naive loop under its own name (so runs and summaries are
labelled ``stable_sgd``), with no hook of its own; the regime lives in
``conf/strategy/stable_sgd.yaml`` (optimizer.lr, optimizer.gamma, benchmark.batch_size,
model.dropout: the Rotated MNIST settings of docs/papers.md). Other benchmarks' settings
(Permuted MNIST: lr 0.1, gamma 0.8, batch 10, dropout 0.5) belong in experiment presets.
"""

from __future__ import annotations

from cl_runner.strategies.base import STRATEGIES
from cl_runner.strategies.naive import Naive
from cl_runner.strategies.schemas import StableSGDConfig


@STRATEGIES.register("stable_sgd", config=StableSGDConfig)
class StableSGD(Naive):
    """Naive fine-tuning in the stable regime: inherits every (no-op) hook of :class:`Naive`."""
