"""Config schemas of the memory-based strategies GEM and GDumb (no torch imported; declared in
:mod:`cl_runner.strategies.schemas`). Each dataclass holds every default of its strategy and
says where each comes from; ``validate()`` refuses an out-of-range value naming its key."""

from __future__ import annotations

from dataclasses import dataclass

from cl_runner.checks import check_at_least_one, check_value


@dataclass
class GEMConfig:
    """``strategy=gem`` (module docstring of ``cl_runner/strategies/gem.py``).

    Attributes:
        memory_per_task: m, examples kept in the episodic memory of each task, the last m of
            its stream (the authors' ``--n_memories``; their MNIST and CIFAR-100 runs:
            256, facebookresearch/GradientEpisodicMemory ``run_experiments.sh``). Mammoth's
            GEM (the DER paper's Seq-MNIST rows) keeps ``buffer_size // num_tasks`` per task:
            40 for a buffer of 200, 100 for 500.
        margin: gamma, the lower bound of the dual variables, v >= gamma (Lopez-Paz & Ranzato
            2017, end of Sec. 3: "adding a small constant gamma >= 0 to v*"; the authors'
            ``--memory_strength``, 0.5 in every run of ``run_experiments.sh``).
        qp_eps: added to the diagonal of G G^T before solving the dual (Mammoth's
            ``project2cone2``: 1e-3; the authors' code adds nothing, and quadprog then refuses a
            singular G G^T, e.g. two collinear memory gradients). 0 = the authors' QP exactly.
    """

    name: str = "gem"
    memory_per_task: int = 256
    margin: float = 0.5
    qp_eps: float = 1e-3

    def validate(self) -> None:
        """Raise :class:`~cl_runner.errors.ConfigError` naming the key of an out-of-range value."""
        check_at_least_one("strategy", self, "memory_per_task")
        check_value("strategy.margin", self.margin, ge=0)
        check_value("strategy.qp_eps", self.qp_eps, ge=0)


@dataclass
class GDumbConfig:
    """``strategy=gdumb`` (module docstring of ``cl_runner/strategies/gdumb.py``). Defaults:
    the authors' code (drimpossible/GDumb ``src/opts.py`` defaults, ``src/main.py``) and their
    MNIST runs (``scripts/replicate.sh``: MLP width 100, memory 500, 128 passes, no cutmix).

    Attributes:
        memory_size: k, the total number of stored examples, balanced over the classes seen
            (``--memory_size``; replicate.sh's MNIST runs: 300, 500, 4400).
        epochs: passes over the memory of each retraining from scratch (``--num_passes``;
            MNIST 128).
        batch_size: retraining minibatch size (``--batch_size`` default 16).
        max_lr: SGD learning rate after the warm-up epoch and at every warm restart
            (``--maxlr`` 0.05); the first epoch runs at ``0.1 * max_lr``.
        min_lr: eta_min of the cosine annealing with warm restarts (``--minlr`` 0.0005).
        momentum: SGD momentum (0.9, hard-coded in their ``main.py``).
        weight_decay: SGD weight decay (``--weight_decay`` default 1e-6).
        clip: gradients clipped to this total L2 norm at every step (``--clip`` 10).
        crop_padding: random-crop augmentation of the memory batches: zero-pad each image by
            this many pixels per side and crop back to its size at a random offset (their
            ``RandomCrop(size, padding=4)`` for 28x28 and 32x32 inputs, MNIST included);
            0 = none.
    """

    name: str = "gdumb"
    memory_size: int = 500
    epochs: int = 128
    batch_size: int = 16
    max_lr: float = 0.05
    min_lr: float = 0.0005
    momentum: float = 0.9
    weight_decay: float = 1e-6
    clip: float = 10.0
    crop_padding: int = 4

    def validate(self) -> None:
        """Raise :class:`~cl_runner.errors.ConfigError` naming the key of an out-of-range value."""
        check_at_least_one("strategy", self, "memory_size", "epochs", "batch_size")
        check_value("strategy.max_lr", self.max_lr, gt=0)
        check_value("strategy.min_lr", self.min_lr, ge=0, le=self.max_lr)
        check_value("strategy.momentum", self.momentum, ge=0, lt=1)
        check_value("strategy.weight_decay", self.weight_decay, ge=0)
        check_value("strategy.clip", self.clip, gt=0)
        check_value("strategy.crop_padding", self.crop_padding, ge=0)
