"""Run-level config schemas and their registration in Hydra's ConfigStore.

Every config group option is validated against a dataclass: the run-level ones below, and
one per declared component (benchmark, model, strategy, optimizer), stored in the group
``schema/<kind>`` so that each ``conf/<kind>/<name>.yaml`` extends its own schema. Unknown
keys, wrong types and unknown options therefore fail while Hydra composes the config, before
any data is loaded.
"""

from __future__ import annotations

import dataclasses
import enum
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from cl_runner.data.schemas import BENCHMARKS
from cl_runner.hardware_config import HardwareConfig
from cl_runner.models.schemas import MODELS
from cl_runner.results import run_folder
from cl_runner.results.names import job_folder_name
from cl_runner.strategies.schemas import STRATEGIES
from cl_runner.training.schemas import OPTIMIZERS

REGISTRIES = (BENCHMARKS, MODELS, STRATEGIES, OPTIMIZERS)

#: the config tree, package data (the repository's top-level ``conf`` links to it)
CONF_DIR = str(Path(__file__).resolve().parent / "conf")


@dataclass
class DataConfig:
    """``data.*``.

    Attributes:
        root: folder holding the datasets in torchvision's layout (``MNIST/raw/...``); default
            the ``CL_RUNNER_DATA`` environment variable, else ``data/`` in the working folder.
        download: try to download missing datasets (needs a network).
    """

    root: str = "${oc.env:CL_RUNNER_DATA,data}"
    download: bool = True


@dataclass
class CheckpointConfig:
    """``checkpoints.*``: save the weights at the end of every task into the run folder.

    Files (``checkpoints/`` in the run folder; see :mod:`cl_runner.results.checkpoints`):
    ``init.pt`` (the shared initialization) and, per task t, the solutions the strategy names
    (``w_hat_{t}.pt``; MC-SGD also ``w_bar_{t}.pt``; multitask ``w_star_{t}.pt``), each a
    ``state_dict`` on the CPU, plus ``index.csv``. Size: 4 bytes per float32 parameter or
    buffer entry plus ~2.5 kB of pickle; the MLP 784-256-256-10 (269,322 parameters) takes
    1.08 MB per file, so a 20-task run 22.7 MB (MC-SGD, two files per task: 44.3 MB).

    Attributes:
        enabled: save checkpoints (default off: no cost at all).
        tasks: the tasks whose end-of-task solutions are saved; null = every task. The
            initialization is always saved when enabled.
    """

    enabled: bool = False
    tasks: list[int] | None = None


class Probe(str, enum.Enum):
    """Names accepted in ``probes: [...]`` (diagnostics computed during training)."""

    gradient_conflict = "gradient_conflict"


class ProbePoint(str, enum.Enum):
    """Where a task-boundary probe measures, for task t >= 2."""

    task_start = "task_start"  # the weights task t starts from (after the strategy's before_task)
    task_end = "task_end"  # the weights evaluated after task t


@dataclass
class GradientConflictConfig:
    """``probe.gradient_conflict.*``: settings of the gradient-conflict probe
    (:mod:`cl_runner.analysis.probes`), used when ``gradient_conflict`` is in ``probes``.

    Attributes:
        examples_per_task: training examples of each task the probe keeps (drawn once, when
            the task starts, with a generator of its own); loss A averages the examples of
            tasks 1..t-1, loss B those of task t.
        chunk_size: examples per forward/backward pass (memory bound only; no effect on the
            values).
        at: where to measure: ``task_start`` and/or ``task_end`` (see :class:`ProbePoint`).
    """

    examples_per_task: int = 256
    chunk_size: int = 1024
    at: list[ProbePoint] = field(
        default_factory=lambda: [ProbePoint.task_start, ProbePoint.task_end])


@dataclass
class ProbeSettings:
    """``probe.*``: the settings of every probe (read only for probes listed in ``probes``)."""

    gradient_conflict: GradientConflictConfig = field(default_factory=GradientConflictConfig)


class LoggerName(str, enum.Enum):
    """``logger=``: where a run's metrics are sent besides its own files."""

    none = "none"
    tensorboard = "tensorboard"
    wandb = "wandb"


class WandbMode(str, enum.Enum):
    """``logger.mode`` of ``logger=wandb`` (W&B's own modes)."""

    online = "online"
    offline = "offline"
    disabled = "disabled"


@dataclass
class LoggerConfig:
    """``logger=none|tensorboard|wandb`` (see :mod:`cl_runner.loggers` and docs/logging.md).
    A run's own files are written whatever the logger; the logger does not change a result.

    Attributes:
        name: the logger. ``tensorboard`` writes event files into ``<run folder>/tensorboard``;
            ``wandb`` a W&B run (its local folder ``<run folder>/wandb``). Both need the
            ``loggers`` extra (``pip install -e '.[loggers]'``).
        project: W&B project.
        entity: W&B entity (user or team); null = your default.
        group: W&B group (e.g. a sweep's name); null = none.
        tags: W&B tags.
        mode: W&B mode: ``online`` (default), ``offline`` (upload later with ``wandb sync``,
            e.g. on cluster nodes without network; the run's end logs the command) or
            ``disabled``.
        every_steps: the training loss (mean over the window) and learning rate are sent
            every N optimizer steps (``train/loss``, ``train/lr``); read from the device once
            per window, never per step.
    """

    name: LoggerName = LoggerName.none
    project: str = "cl_runner"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: WandbMode = WandbMode.online
    every_steps: int = 50


@dataclass
class ObjectiveConfig:
    """``objective.*``: what ``cl-run`` returns to a sweeper (Optuna: the value it maximizes);
    see :mod:`cl_runner.objective` and docs/hparams_search.md.

    Attributes:
        seeds: null (default): the run's own ``seed``, one run. A list: one run per seed, in
            ``<job folder>/seed<k>``, and the objective is their mean average accuracy
            (``objective.json`` in the job folder lists each).
        diverged_value: null (default): a run whose loss diverges fails (as without a
            sweeper). A number: such a run scores this value instead (e.g. 0.0), so a search
            that tries a too-large learning rate goes on and learns from it.
    """

    seeds: list[int] | None = None
    diverged_value: float | None = None


class FutureTasks(str, enum.Enum):
    """Which not-yet-trained tasks the end-of-task evaluation scores (``eval.future_tasks``)."""

    #: every task after every task: the whole T x T matrix (the MC-SGD paper's heatmaps)
    all = "all"
    #: the initial evaluation of all tasks and, after task t, tasks 1..t+1: every cell a
    #: reported metric reads (forward transfer: the initial accuracies and a[t-1, t])
    next = "next"
    #: tasks 1..t after task t and no initial evaluation: no forward transfer
    none = "none"


@dataclass
class EvalConfig:
    """``eval.*``: the end-of-task evaluation's extent, and continual evaluation (De Lange
    et al., ICLR 2023), see :mod:`cl_runner.training.continual_eval`.

    Attributes:
        future_tasks: which tasks not trained yet the end-of-task evaluation scores
            (:class:`FutureTasks`): ``all`` (default: the full matrix, as every run before
            this option), ``next`` or ``none``. A cell not evaluated is empty in
            ``accuracy_matrix.csv`` and ``metrics.csv``; a metric that needs one is null
            (forward transfer under ``none``). Evaluation cost on 20-task Rotated MNIST:
            docs/results/measured.md.
        every_steps: evaluate the tasks seen so far every N optimizer steps (and at every
            task end) into ``continual_eval.csv``; null (default) = off, no cost at all.
            Steps of every phase count (MC-SGD's line phase too), so strategies of different
            batch sizes get different numbers of points per task: see ``every_examples``.
        every_examples: instead of ``every_steps``: evaluate every E training examples of the
            stream (``benchmark.batch_size`` per step of the continual phase; replayed
            examples and a strategy's own phases do not count), so strategies with different
            batch sizes are sampled at the same points; null (default) = off. Set at most one.
        subset_size: test examples per task in each such evaluation (a fixed, seeded
            subset; the end-of-task accuracy matrix still uses the whole test sets).
    """

    future_tasks: FutureTasks = FutureTasks.all
    every_steps: int | None = None
    every_examples: int | None = None
    subset_size: int = 1000


@dataclass
class RunConfig:
    """The whole run config (``conf/config.yaml`` and its groups).

    Attributes:
        seed: seeds model initialization, dropout, shuffles, subsets, memories, permutations.
        progress: show the rich progress bar.
        force: run even when the run folder already holds a complete result: of the same
            config (by default such a job is skipped, so a relaunched sweep only runs what is
            missing) or of another one (by default refused; with force its files are removed
            first); see :func:`cl_runner.results.run_folder.check_run_folder`.
        checkpoints: end-of-task weights saved for ``cl-analyze`` (off by default).
        resume: a run folder holding the resume state of an unfinished run of the same
            config continues it from its last finished task (default); false starts over
            (see :mod:`cl_runner.resume`).
        probes: diagnostics computed at task boundaries and written to ``diagnostics.csv``
            (default none; e.g. ``probes=[gradient_conflict]``); ``probe.*`` holds their
            settings. Probes only read the model: they change no training number.
        eval: continual evaluation during training (off by default; :class:`EvalConfig`).
        logger: TensorBoard or W&B logging (none by default; :class:`LoggerConfig`).
        objective: the value returned to a sweeper (:class:`ObjectiveConfig`).
    """

    seed: int = 1
    data: DataConfig = field(default_factory=DataConfig)
    benchmark: Any = MISSING
    model: Any = MISSING
    strategy: Any = MISSING
    optimizer: Any = MISSING
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    progress: bool = True
    force: bool = False
    resume: bool = True
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    probes: list[Probe] = field(default_factory=list)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)


#: width of the ``cl-run --help`` group lines, and the column their options start at
HELP_WIDTH, HELP_INDENT = 96, 15


def group_options(group: str, chosen: str | None = None) -> str:
    """The options of config group ``group`` (the YAML files in ``conf/<group>/``), comma
    separated, the ``chosen`` one marked with ``*``: ``"permuted_mnist, rotated_mnist*"``;
    wrapped at :data:`HELP_WIDTH` columns, continuation lines indented by :data:`HELP_INDENT`.

    Registered as the OmegaConf resolver ``${cl_runner.options:GROUP[,CHOSEN]}``, which the
    ``cl-run --help`` template (``conf/hydra/help/cl_run.yaml``) uses to list the groups.
    """
    names = sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))
    text = ", ".join(f"{n}*" if n == chosen else n for n in names)
    return textwrap.fill(text, width=HELP_WIDTH, subsequent_indent=" " * HELP_INDENT,
                         break_on_hyphens=False, initial_indent=" " * HELP_INDENT)[HELP_INDENT:]


def keys_help(group: str, chosen: str | None = None) -> str:
    """Help lines of the keys of config group ``group``'s option ``chosen`` (``run``: the
    run-level keys), from the schema dataclass: type, allowed values, default and the
    description of its docstring (:mod:`cl_runner.schema_help`). Registered as the resolver
    ``${cl_runner.keys:GROUP[,CHOSEN]}`` of ``cl-run --help``; ``$`` doubled for the
    template."""
    from cl_runner.schema_help import describe_fields

    if group == "run":
        title, schema = "run-level keys", RunConfig
        lines = describe_fields(schema)
    else:
        registry = {r.kind: r for r in REGISTRIES}.get(group)
        if registry is None or chosen not in registry:
            return f"{group}={chosen}: (keys not described)"
        title, schema = f"{group}={chosen}", registry.get(chosen).config
        lines = describe_fields(schema, prefix=f"{group}.")
    return "\n".join([f"{title} ({schema.__name__}):", *lines]).replace("$", "$$")


def register_configs() -> None:
    """Store the run schema and one schema per registered component in Hydra's ConfigStore,
    and register the resolvers ``cl_runner.options`` (:func:`group_options`) and
    ``cl_job_dir`` (sweep job folder names, :func:`job_folder_name`)."""
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    if not OmegaConf.has_resolver("cl_job_dir"):  # sweep job folder names (conf/config.yaml)
        OmegaConf.register_new_resolver("cl_job_dir", job_folder_name)
    for registry in REGISTRIES:
        for entry in registry:
            cs.store(group=f"schema/{registry.kind}", name=entry.name, node=entry.config)
    if not OmegaConf.has_resolver("cl_runner.options"):
        OmegaConf.register_new_resolver("cl_runner.options", group_options)
    if not OmegaConf.has_resolver("cl_runner.keys"):  # cl-run --help: the keys described
        OmegaConf.register_new_resolver("cl_runner.keys", keys_help)


def schema_defaults(schema: type) -> dict[str, Any]:
    """The defaults of a config dataclass as the plain data ``summary.json`` stores (enums as
    their values, tuples as lists); fields without a default (a run's groups) are left out."""
    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not MISSING}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(schema()))


def _fill(defaults: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the keys it lacks taken from ``defaults``, recursively in sub-trees."""
    out = dict(values)
    for key, default in defaults.items():
        if key not in out:
            out[key] = default
        elif isinstance(default, dict) and isinstance(out[key], dict):
            out[key] = _fill(default, out[key])
    return out


def fill_schema_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """A plain run config (as ``summary.json`` or a resume state stores it) with every key it
    lacks set to its schema default: run-level keys from :class:`RunConfig`, a group's keys
    from the schema of the option it names (``strategy.name`` -> ``SupSupConfig`` ...); a
    group naming no registered option is left as it is. Installed into
    :func:`cl_runner.results.run_folder.comparable_config` when this module is imported, so a
    result stored before a key existed compares equal to a config with that key at its
    default."""
    out = _fill(schema_defaults(RunConfig), config)
    for registry in REGISTRIES:
        node = out.get(registry.kind)
        if isinstance(node, dict) and isinstance(node.get("name"), str) and node["name"] in registry:
            out[registry.kind] = _fill(schema_defaults(registry.get(node["name"]).config), node)
    return out


run_folder.use_schema_defaults(fill_schema_defaults)
