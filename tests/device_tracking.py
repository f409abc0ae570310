"""A simulated second device for CPU-only tests of the CUDA path (issue 16, step 1-2).

On a machine without a GPU every tensor is on the CPU, so a tensor a strategy forgets to put
on the run's device (``torch.zeros(n)`` instead of ``torch.zeros(n, device=ctx.device)``)
cannot fail there. :class:`DeviceTracker` is a :class:`~torch.overrides.TorchFunctionMode`
that gives every tensor a *logical* device and checks what CUDA would check:

- ``"host"``: made by a factory (``zeros``, ``randperm``, ``tensor``...) without a
  ``device=``, by ``.cpu()``, or computed from host tensors only;
- ``"run"``: made with ``device=`` (a run on the CPU passes ``cpu``: the run's device), by
  ``.to(device)``, or computed from a run tensor (``zeros_like``, arithmetic, indexing...);
- untagged (neutral): tensors the mode never saw made (read from files, autograd's
  gradients); they mix with both.

A violation is an op that mixes a host tensor with a run tensor (CUDA raises "Expected all
tensors to be on the same device", or copies silently per call for a host index), except a
host 0-dim tensor used as an operand (CUDA allows CPU scalars), ``copy_`` (an explicit
transfer) and queries returning no tensor (``size``, ``dim``...). Inside
:meth:`DeviceTracker.step` (the training step) any host sync on a non-host tensor is a
violation too: ``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``, ``bool/float/int(t)``,
and the ops whose output size depends on values (``nonzero``, boolean-mask indexing...).

``.to(device)`` of a tensor that returns the same object (a CPU run) returns a copy, as a real
transfer would, so that the host original and the device copy stay distinct objects.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

HOST, RUN = "host", "run"

FACTORIES = {"zeros", "ones", "empty", "full", "arange", "range", "randperm", "rand", "randn",
             "randint", "tensor", "as_tensor", "eye", "linspace", "logspace", "empty_strided",
             "scalar_tensor", "tril_indices", "triu_indices", "from_numpy", "frombuffer"}
LIKE = {"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
        "randint_like", "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor"}
SYNCS = {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__",
         "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "bincount",
         "repeat_interleave"}
QUERIES = {"size", "dim", "numel", "is_floating_point", "is_complex", "element_size",
           "_has_compatible_shallow_copy_type", "data_ptr", "stride", "storage_offset",
           "is_contiguous", "__len__", "__get__", "__repr__", "__format__", "__str__",
           "equal", "is_same_size", "__hash__"}


def _name(func: Any) -> str:
    return getattr(func, "__name__", str(func))


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in nested lists, tuples and dicts."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _where() -> str:
    """The innermost frame outside torch and this file (where the op was called), as
    ``path:line function`` (path from ``cl_runner/`` or ``tests/``)."""
    for frame in reversed(traceback.extract_stack()):
        name = frame.filename
        if name == __file__ or "/torch/" in name or "/torchvision/" in name:
            continue
        for root in ("/cl_runner/", "/tests/"):
            if root in name:
                name = root.strip("/") + "/" + name.split(root)[-1]
        return f"{name}:{frame.lineno} {frame.name}"
    return "unknown"


class DeviceTracker(TorchFunctionMode):
    """Logical-device tracking and, inside :meth:`step`, the host-sync guard (module docstring).

    Args:
        device: the run's device (on a CPU-only machine ``cpu``); ``.to(d)`` and ``device=d``
            with ``d`` of this type make run tensors, any other type host tensors.

    Attributes:
        violations: one line per violation: ``kind func at cl_runner/file.py:line function``
            (deduplicated, in order of first occurrence).
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.device = torch.device(device)
        self.tags: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.violations: list[str] = []
        self._in_step = 0
        self._parameter_new = None

    # ---- public helpers ---------------------------------------------------------------
    def tag(self, t: torch.Tensor) -> str | None:
        """The logical device of ``t``: ``"host"``, ``"run"`` or None (never seen made)."""
        return self.tags.get(t)

    @contextmanager
    def step(self) -> Iterator[None]:
        """Mark the code inside as the training step (host syncs are violations there)."""
        self._in_step += 1
        try:
            yield
        finally:
            self._in_step -= 1

    def reads_host(self, load: Callable[..., Any]) -> Callable[..., Any]:
        """``load`` (e.g. a dataset reader) with every tensor it returns tagged host: tensors
        made outside the mode's sight (``frombuffer``, ``from_numpy``, unpickling) are
        otherwise neutral, and data a benchmark forgot to move would pass unseen."""
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            out = load(*args, **kwargs)
            for t in _tensors(out):
                self.tags[t] = HOST
            return out
        return wrapped

    def host_tensors(self, obj: Any, where: str, depth: int = 3) -> list[str]:
        """Names of the host tensors (any shape) held by ``obj``: its attributes, recursively
        through lists, tuples, dicts and plain objects (``depth`` levels), e.g. a strategy,
        its memories, a benchmark. Generators and modules' parameters are not tensors here."""
        found: list[str] = []
        self._walk(obj, where, depth, found, set())
        return found

    # ---- the mode -----------------------------------------------------------------------
    def __enter__(self):
        tracker = self
        original = torch.nn.Parameter.__new__
        self._parameter_new = original

        def parameter_new(cls, data=None, requires_grad=True):  # a Parameter keeps data's tag
            param = original(cls, data, requires_grad)
            if data is not None and tracker.tag(data) is not None:
                tracker.tags[param] = tracker.tag(data)
            return param

        torch.nn.Parameter.__new__ = staticmethod(parameter_new)
        return super().__enter__()

    def __exit__(self, *exc):
        torch.nn.Parameter.__new__ = staticmethod(self._parameter_new)
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        if self._in_step and name in SYNCS:
            self._sync_check(name, args)
        if name == "__getitem__" and self._in_step and len(args) > 1:
            for idx in _tensors(args[1]):
                if idx.dtype == torch.bool and self.tag(args[0]) != HOST:
                    self._report("host sync (boolean-mask indexing)", name)
        if name == "__set__" and len(args) == 2 and isinstance(args[1], torch.Tensor):
            out = func(*args, **kwargs)  # ``param.data = t``: the parameter now is t
            tag = self.tag(args[1])
            if tag is not None:
                self.tags[args[0]] = tag
            return out
        inputs = list(_tensors(args)) + list(_tensors(kwargs))
        out = func(*args, **kwargs)
        if name in {"to", "cuda", "cpu", "type"}:
            return self._moved(name, args, kwargs, out)
        if name in FACTORIES and not (name in {"tensor", "as_tensor"} and inputs):
            device = kwargs.get("device")
            tag = HOST if device is None or torch.device(device).type != self.device.type else RUN
            for t in _tensors(out):
                self.tags[t] = tag
            return out
        if name in LIKE and inputs:
            device = kwargs.get("device")
            tag = (self.tag(inputs[0]) if device is None
                   else RUN if torch.device(device).type == self.device.type else HOST)
            for t in _tensors(out):
                if tag is not None:
                    self.tags[t] = tag
            return out
        if name in QUERIES or name == "copy_":
            return out
        self._mix_check(name, args, inputs, out)
        return out

    # ---- internals ----------------------------------------------------------------------
    def _report(self, kind: str, name: str) -> None:
        line = f"{kind}: {name} at {_where()}"
        if line not in self.violations:
            self.violations.append(line)

    def _sync_check(self, name: str, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor) and self.tag(args[0]) != HOST:
            if not _called_by_torch():
                self._report("host sync in the training step", name)

    def _mix_check(self, name: str, args: tuple, inputs: list[torch.Tensor], out: Any) -> None:
        tags = [self.tag(t) for t in inputs]
        has_run = RUN in tags
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        in_place = (name.endswith("_") and not name.endswith("__")) or name == "__setitem__" or (
            name.startswith("__i") and name not in {"__init__", "__index__", "__int__",
                                                   "__invert__", "__iter__"})
        host_big = [t for t, g in zip(inputs, tags, strict=True)
                    if g == HOST and (t.dim() > 0 or (in_place and t is first))]
        if has_run and host_big:
            self._report("host tensor mixed with run-device tensor", name)
        out_tag = RUN if has_run else HOST if HOST in tags else None
        if in_place and first is not None:
            return  # an in-place op's result is its first argument, tag unchanged
        if out_tag is not None:
            for t in _tensors(out):
                if not any(t is i for i in inputs):
                    self.tags[t] = out_tag

    def _moved(self, name: str, args: tuple, kwargs: dict, out: Any) -> Any:
        src = args[0] if args else None
        if name == "cpu":
            target = torch.device("cpu") if self.device.type != "cpu" else None
            tag = HOST
        else:
            target = _target_device(args[1:], kwargs)
            tag = (None if target is None
                   else RUN if target.type == self.device.type else HOST)
            if name == "cuda":
                tag = RUN
        if tag is None and target is None:  # dtype-only conversion (or .to(other_tensor))
            other = next((a for a in args[1:] if isinstance(a, torch.Tensor)), None)
            tag = self.tag(other) if other is not None else self.tag(src)
        if isinstance(out, torch.Tensor) and tag is not None:
            if out is src and self.tag(src) != tag:
                with torch.no_grad():  # a real transfer makes a new tensor
                    copy = out.detach().clone()
                if out.requires_grad:
                    copy.requires_grad_(True)
                out = copy
            self.tags[out] = tag
        return out

    def _walk(self, obj: Any, where: str, depth: int, found: list[str], seen: set[int]) -> None:
        if id(obj) in seen or depth < 0:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            if self.tag(obj) == HOST:
                found.append(f"{where} {tuple(obj.shape)} {obj.dtype}")
            return
        if isinstance(obj, list | tuple):
            for i, item in enumerate(obj):
                self._walk(item, f"{where}[{i}]", depth, found, seen)
        elif isinstance(obj, dict):
            for key, item in obj.items():
                self._walk(item, f"{where}[{key!r}]", depth, found, seen)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type | torch.nn.Module):
            for key, item in vars(obj).items():
                self._walk(item, f"{where}.{key}", depth - 1, found, seen)


def _called_by_torch() -> bool:
    """True when the op was called by PyTorch's own Python code (e.g. the non-capturable
    ``torch.optim.Adam`` reads its step counter, a CPU tensor also on CUDA runs, with
    ``.item()``): the check is about this project's code, whose calls are reported."""
    frame = sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename == __file__
                                 or frame.f_code.co_filename.endswith("torch/overrides.py")):
        frame = frame.f_back
    return frame is not None and "/torch/" in frame.f_code.co_filename


def _target_device(args: tuple, kwargs: dict) -> torch.device | None:
    """The device a ``Tensor.to`` call names, or None (dtype or tensor argument only)."""
    candidates = [kwargs.get("device"), *args]
    for value in candidates:
        if isinstance(value, torch.device):
            return value
        if isinstance(value, str):
            return torch.device(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return torch.device("cuda", value)
    return None
