"""Models, registered by name in ``MODELS``.

``MODELS`` and the config schemas (:mod:`cl_runner.models.schemas`) import no torch; a
model's module (``mlp``, ``resnet``, ``supermask``) is imported when the model is built.
"""

from cl_runner.models.schemas import MODELS

__all__ = ["MODELS"]
