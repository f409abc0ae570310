"""The model registry."""

from torch import nn

from cl_runner.registry import Registry

#: name -> factory(cfg, input_shape: tuple[int, ...], num_classes: int) -> nn.Module
MODELS: Registry[nn.Module] = Registry("model")
