"""Names of things made from a run's config: sweep job folders (Hydra's ``hydra.sweep.subdir``,
hence Optuna trial folders and W&B run names, which take the folder's name) and the file
names ``cl-summarize`` makes from group labels.

Which config keys change no number of a result is declared once, here
(:data:`RESULT_NEUTRAL_KEYS`): job folder names leave them out (unless the sweep varies them)
and ``cl-summarize`` never groups by them.

A job folder's name leads with what differs between the sweep's jobs: the swept keys (the
strategy first, then the seed, then the other swept keys in alphabetical order), then the
overrides every job shares, result-neutral ones left out:
``strategy=mcsgd,seed=2,benchmark=rotated_mnist,benchmark.num_tasks=3``. A name longer than
:data:`MAX_NAME` bytes is cut and ends with ``~`` and 8 hex digits of the SHA-1 of the job's
whole set of overrides, so it stays one name per set of overrides. A folder named as before
(Hydra's ``override_dirname``, sorted, cut at the same length: :func:`legacy_job_folder_name`)
is still used when it exists and the new name does not, so a sweep started before keeps
resuming into its folders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from cl_runner.results.run_folder import NON_RESULT_KEYS

#: THE declaration of the config keys (dotted; a key covers its sub-keys and a config group
#: of that name) that change no number of a run's result: the keys of
#: :data:`~cl_runner.results.run_folder.NON_RESULT_KEYS` (progress bar, skip/resume
#: switches, data location, logger, what a sweeper is told), the hardware (device, threads:
#: the same experiment, up to floating-point rounding), continual evaluation, checkpoints and
#: probes (they only read the model), the search preset and Hydra's own settings. Sweep job
#: folder names leave them out unless the sweep varies them; ``cl-summarize`` never groups by
#: them (runs differing only in them are the same experiment).
RESULT_NEUTRAL_KEYS: tuple[str, ...] = (*NON_RESULT_KEYS, "hardware", "eval", "checkpoints",
                                        "probes", "probe", "hparams_search", "hydra")

#: keys below a result-neutral key that do change results: ``hardware.precision`` (bf16 or
#: float16 forward passes are another experiment than float32)
RESULT_KEYS_UNDER_NEUTRAL: tuple[str, ...] = ("hardware.precision",)

#: the keys a sweep job folder's name starts with when they are set (what a reader looks for)
LEADING_KEYS = ("strategy", "seed")

#: longest sweep job folder name (bytes); longer names are cut and end with a hash of the whole
MAX_NAME = 120


def is_result_neutral(key: str) -> bool:
    """Whether the dotted config key ``key`` (or the group it names) is in, or below a key of,
    :data:`RESULT_NEUTRAL_KEYS`: ``hardware.num_threads`` -> True, ``optimizer.lr`` -> False;
    a key of :data:`RESULT_KEYS_UNDER_NEUTRAL` (``hardware.precision``) -> False."""
    parts = key.split(".")
    if any(".".join(parts[:i]) in RESULT_KEYS_UNDER_NEUTRAL for i in range(1, len(parts) + 1)):
        return False
    return any(".".join(parts[:i]) in RESULT_NEUTRAL_KEYS for i in range(1, len(parts) + 1))


def override_key(override: str) -> str | None:
    """The config key an override sets (``+a.b=1`` -> ``a.b``; ``group@pkg=x`` -> ``group``),
    or None for a malformed one."""
    key = override.split("=", 1)[0].lstrip("+~").strip()
    if "@" in key:
        key = key.split("@", 1)[0]
    return key or None


def bounded_name(name: str, max_bytes: int = MAX_NAME, identity: str | None = None) -> str:
    """``name`` when it has at most ``max_bytes`` bytes (UTF-8); else its first bytes (whole
    characters) followed by ``~`` and the first 8 hex digits of the SHA-1 of ``identity``
    (default ``name``), ``max_bytes`` bytes in all: distinct identities keep distinct names.
    File systems allow 255 bytes per name."""
    raw = name.encode("utf-8")
    if len(raw) <= max_bytes:
        return name
    digest = hashlib.sha1((name if identity is None else identity).encode("utf-8")).hexdigest()
    head = raw[:max_bytes - 9].decode("utf-8", errors="ignore")
    return f"{head}~{digest[:8]}"


def legacy_job_folder_name(override_dirname: str, fallback: str) -> str:
    """The name sweep job folders had before 2026-12-07: Hydra's ``hydra.job.override_dirname``
    (the job's overrides but those ``conf/config.yaml`` excludes, sorted, joined by ``,``) with
    ``/`` made ``_``, cut at :data:`MAX_NAME` bytes plus a hash; ``fallback`` when empty."""
    return bounded_name(override_dirname.replace("/", "_").strip() or fallback)


def _order(key: str) -> tuple[int, str]:
    return (LEADING_KEYS.index(key) if key in LEADING_KEYS else len(LEADING_KEYS), key)


def job_folder_name(overrides: Iterable[str], swept: str | Iterable[str] = "",
                    fallback: str = "run", sweep_dir: str | Path | None = None,
                    override_dirname: str | None = None) -> str:
    """The name of a sweep job's folder (the module docstring says how it is made).

    Args:
        overrides: the job's overrides (``hydra.overrides.task``: ``key=value`` strings).
        swept: the keys the sweep varies (a space-separated string, as the resolver gets it,
            or an iterable); empty when unknown (then only the strategy and seed lead).
        fallback: the name of a job without any override left in its name.
        sweep_dir: the sweep folder; with ``override_dirname``, a folder there under the
            job's former name (:func:`legacy_job_folder_name`) is used when it exists and the
            new name does not (a sweep started before resumes into its folders).
        override_dirname: Hydra's ``hydra.job.override_dirname`` of the job.

    Returns:
        A file name (no ``/``) of at most :data:`MAX_NAME` bytes, the same for the same
        overrides and swept keys whatever their order on the command line.
    """
    swept_keys = set(swept.split() if isinstance(swept, str) else swept)
    items: list[tuple[bool, tuple[int, str], str]] = []
    for override in overrides:
        override = str(override)
        key = override_key(override)
        if key is None:
            continue
        varies = key in swept_keys
        if not varies and is_result_neutral(key):
            continue
        text = override.lstrip("+") if "=" in override else override
        items.append((not varies, _order(key), text.replace("/", "_").strip()))
    items.sort()
    name = ",".join(text for _, _, text in items) or fallback
    name = bounded_name(name, identity="\n".join(sorted(text for _, _, text in items)))
    if sweep_dir is not None and override_dirname is not None:
        legacy = legacy_job_folder_name(override_dirname, fallback)
        if not (Path(sweep_dir) / name).exists() and (Path(sweep_dir) / legacy).is_dir():
            return legacy
    return name



#: how tables and figures name strategies and benchmarks, as their papers spell them; a name
#: not listed here is shown as registered (``strategy=my_method`` -> ``my_method``), so a new
#: strategy needs no entry to be shown
DISPLAY_NAMES: dict[str, str] = {
    # strategies
    "naive": "Naive", "mcsgd": "MC-SGD", "er": "ER-Reservoir", "er_ace": "ER-ACE",
    "agem": "A-GEM", "gem": "GEM", "ewc": "EWC", "si": "SI", "mas": "MAS", "lwf": "LwF",
    "der": "DER", "derpp": "DER++", "icarl": "iCaRL", "gdumb": "GDumb", "wa": "WA",
    "bic": "BiC", "multitask": "Multitask", "stable_sgd": "Stable SGD", "supsup": "SupSup",
    "impresslearn": "ImpressLearn",
    # benchmarks
    "rotated_mnist": "Rotated MNIST", "permuted_mnist": "Permuted MNIST",
    "split_mnist": "Split MNIST", "split_cifar10": "Split CIFAR-10",
    "split_cifar100": "Split CIFAR-100",
}


def display_name(name: str) -> str:
    """The name tables and figures show for a registered strategy or benchmark name
    (:data:`DISPLAY_NAMES`; ``mcsgd`` -> ``MC-SGD``), else ``name`` itself."""
    return DISPLAY_NAMES.get(name, name)
