"""Models, registered by name in ``MODELS``."""

from cl_runner.models import (
    mlp,  # noqa: F401  (registers "mlp")
    resnet,  # noqa: F401  (registers "resnet18_reduced")
    supermask,  # noqa: F401  (registers "masked_mlp", "masked_resnet18_reduced")
)
from cl_runner.models.base import MODELS

__all__ = ["MODELS"]
