"""cl_runner: a continual-learning experiment runner driven by Hydra configuration."""

__version__ = "0.1.0"
