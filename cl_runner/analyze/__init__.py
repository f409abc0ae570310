"""``cl-analyze``: linear-mode-connectivity analyses over run folders saved with
``checkpoints.enabled=true`` (Mirzadeh et al., ICLR 2021; docs/papers.md, "Linear mode
connectivity analyses").

    cl-analyze interpolate RUN [RUN ...] [i=1] [t=[5,10,20]] [points=21] [task=1]
    cl-analyze interpolate RUN ... pairs=[mcsgd/w_hat_1:multitask/w_star_5]
    cl-analyze plane RUN ... [i=1] [t=[20]] [grid=21]
    cl-analyze distances RUN ...
    cl-analyze curvature RUN ... [at=mcsgd/w_hat_1] [task=1] [k=5] [method=lanczos]

Arguments: a command, run folders of one benchmark, model and seed (e.g. a naive, a multitask
and an MC-SGD run), and options in ``key=value`` form (validated against
:class:`AnalyzeOptions`; no argparse in the project). Solutions are named ``LABEL/NAME``: the
label of a run is its strategy's name (``labels=[...]`` to choose), the name one of its
checkpoints (``init``, ``w_hat_3``, ``w_bar_3``, ``w_star_3``); a bare name is accepted when
only one run has it.

The paper's comparisons (``interpolate`` without ``pairs``; also the directions of
``curvature``), for i and each t: ``w_hat_i -> w_hat_t`` in every run with continual minima
(continual), and from the start run's ``w_hat_i`` (``start=LABEL``; default: the first run
given that has ``w_hat``) to every multitask run's ``w_star_t`` (multitask) and every MC-SGD
run's ``w_bar_t`` (mcsgd). The task evaluated is ``task`` (default i). The loss barrier of a
path is the largest height of its loss above the straight line between its end points' losses
(0 on a monotone path; :func:`cl_runner.analysis.lmc.barrier`); ``barriers_task{task}.csv``
also holds the maximum minus the mean of the end points (``max_minus_end_mean``, what was
called the barrier before 2026-12-06) and the bump above the larger end (``interior_bump``).

Files (folder ``out``, default ``<first run>/analysis``), each table a tidy CSV and each plot a
PNG and a PDF: ``interpolate_task{task}.csv`` (``comparison, start, end, t, task, split,
alpha, loss, accuracy``), ``barriers_task{task}.csv``, ``interpolate_task{task}.png``;
``plane_task{task}_t{t}.csv`` (``x, y, loss, accuracy``), ``plane_points_task{task}_t{t}.csv``,
``plane_task{task}_t{t}.png``; ``distances.csv`` (``a, b, distance``), ``distances.png``;
``curvature_eigen_{at}_task{task}.csv``, ``curvature_cosines_{at}_task{task}.csv``,
``curvature_{at}_task{task}.png``.

Data: the runs' benchmark is rebuilt from their saved config (same seed, same transforms), from
``data_root`` (default ``CL_RUNNER_DATA``, else the runs' ``data.root``). Losses and
accuracies are measured in eval mode (no dropout); BatchNorm as :mod:`cl_runner.analysis.lmc`
describes (``batchnorm=recompute|interpolate``).

Modules: :mod:`~cl_runner.analyze.options` (the ``key=value`` options and paths),
:mod:`~cl_runner.analyze.commands` (the commands, over rebuilt runs),
:mod:`~cl_runner.analyze.plots` (their figures), :mod:`~cl_runner.analyze.main` (the entry
point).
"""

from cl_runner.analyze.commands import Analysis
from cl_runner.analyze.main import USAGE, main, run_command
from cl_runner.analyze.options import COMMANDS, AnalyzeOptions, Pair

__all__ = ["COMMANDS", "USAGE", "Analysis", "AnalyzeOptions", "Pair", "main", "run_command"]
