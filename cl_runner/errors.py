"""Errors the runner reports to the user as a one-paragraph message instead of a traceback."""


class CLRunnerError(Exception):
    """Base class for user-facing errors (bad input, missing data, invalid settings)."""


class DatasetNotFoundError(CLRunnerError):
    """A dataset's files are missing from the data root and could not be downloaded."""


class ConfigError(CLRunnerError):
    """A configuration value is well-typed but invalid (e.g. a negative batch size)."""


class TrainingDivergedError(CLRunnerError):
    """The training loss became NaN or infinite; the run stops instead of reporting chance-level
    numbers as a result."""
