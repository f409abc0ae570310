"""cl_runner's submitit launchers for Hydra: the plugin's ``SlurmLauncher`` and
``LocalLauncher`` with one-line reports of jobs that ended without a result
(:mod:`cl_runner.submitit_launchers`). Hydra instantiates launchers only from this package.
:class:`LauncherConfigs` points ``hydra/launcher=submitit_slurm|submitit_local`` at them.
Nothing but that hook is defined without the ``slurm`` extra (hydra-submitit-launcher)."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from cl_runner.submitit_launchers import OneLineReports, register_launchers

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher as _plugin
except ImportError:  # pip install -e '.[slurm]'
    _plugin = None


class LauncherConfigs(SearchPathPlugin):
    """Not a search path: Hydra calls every search-path plugin after it imported all plugin
    modules and before it composes, the one point where this project's launcher configs
    reliably replace the plugin's entries of the same names (:func:`register_launchers`)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        register_launchers()


if _plugin is not None:
    class SlurmLauncher(OneLineReports, _plugin.SlurmLauncher):
        """``hydra/launcher=submitit_slurm``: every job a SLURM job."""

    class LocalLauncher(OneLineReports, _plugin.LocalLauncher):
        """``hydra/launcher=submitit_local``: every job a local process, as on SLURM."""
