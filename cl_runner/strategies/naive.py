"""Naive SGD: plain fine-tuning on each task in turn (the lower baseline of the papers)."""

from __future__ import annotations

from cl_runner.strategies.base import STRATEGIES, Strategy
from cl_runner.strategies.schemas import NaiveConfig


@STRATEGIES.register("naive", config=NaiveConfig)
class Naive(Strategy):
    """Plain fine-tuning: the base hooks, all no-ops (Mirzadeh et al. 2021, Table 1 "Naive SGD")."""
