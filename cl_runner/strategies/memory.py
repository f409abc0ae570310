"""Episodic memory: a small store of past examples, selected per class per task
(:class:`EpisodicMemory`) or by reservoir sampling over the stream (:class:`ReservoirBuffer`)."""

from __future__ import annotations

from typing import Any

import torch


def per_class_indices(y: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``per_class`` random examples of every class present in ``y`` int64 ``(N,)``
    (fewer if a class has fewer), grouped by class in increasing class order, without
    replacement. One host sync (the class counts). Returns int64 ``(K,)`` on ``y``'s device."""
    order = torch.randperm(len(y), generator=generator).to(y.device)
    shuffled = y[order]
    # stable sort by class keeps the random order within each class
    by_class = order[torch.sort(shuffled, stable=True).indices]
    classes, counts = torch.unique_consecutive(y[by_class], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    return torch.cat([by_class[s : s + min(per_class, int(c))]
                      for s, c in zip(starts.tolist(), counts.tolist(), strict=True)])


def stored_floats(*tensors: torch.Tensor | None) -> float:
    """The float32 equivalents of ``tensors`` as stored: their bytes / 4 (a uint8 pixel counts
    1/4, an int64 label or task id 2, a float32 value 1). None counts 0."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None) / 4


def floats_by_task(x: torch.Tensor | None, y: torch.Tensor | None, task: torch.Tensor | None,
                   num_tasks: int, logits: torch.Tensor | None = None) -> list[float]:
    """Per task k = 1..``num_tasks``: the float32 equivalents (:func:`stored_floats`) of the
    stored examples of task k, input ``x (M, ...)``, label ``y (M,)``, task id ``task (M,)``
    and, when given, stored logits ``logits (M, C)`` of each. Zeros when nothing is stored.
    One host sync (the counts)."""
    if y is None or len(y) == 0:
        return [0.0] * num_tasks
    per_example = stored_floats(x[:1], y[:1], task[:1],
                                None if logits is None else logits[:1])
    counts = torch.bincount(task.cpu(), minlength=num_tasks + 1)[1 : num_tasks + 1]
    return [per_example * int(c) for c in counts]


class EpisodicMemory:
    """Examples kept from past tasks, stored like the benchmark's data (uint8 inputs).

    Attributes:
        x: ``(M, *input_shape)`` stored inputs (empty until the first ``add``).
        y: int64 ``(M,)`` labels.
        task: int64 ``(M,)`` 1-based task id of each example.
    """

    def __init__(self) -> None:
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.task: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.y is None else len(self.y)

    def state_dict(self) -> dict[str, torch.Tensor | None]:
        """The stored examples (what a resume state keeps)."""
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, torch.Tensor | None]) -> None:
        """Restore what :meth:`state_dict` returned."""
        vars(self).update(state)

    def add_per_class(self, x: torch.Tensor, y: torch.Tensor, task: int, per_class: int,
                      generator: torch.Generator) -> None:
        """Add ``per_class`` random examples of every class present in ``y`` (fewer if a class
        has fewer examples), chosen by :func:`per_class_indices`.

        Args:
            x: ``(N, *input_shape)`` inputs of the task. y: int64 ``(N,)``.
            task: 1-based task id recorded with the examples.
            per_class: examples per class (the papers: 1).
            generator: CPU generator making the choice reproducible.
        """
        if per_class < 1:
            return
        take = per_class_indices(y, per_class, generator)
        self.add(x[take], y[take], task)

    def add_with_replacement(self, x: torch.Tensor, y: torch.Tensor, task: int, k: int,
                             generator: torch.Generator) -> None:
        """Add ``k`` examples drawn uniformly *with replacement* from ``x (N, ...)``,
        ``y (N,)`` (the same example may be stored twice), as the MC-SGD authors' code fills
        its MNIST memory (``RandomSampler(replacement=True)``)."""
        if k < 1:
            return
        take = torch.randint(len(y), (k,), generator=generator).to(y.device)
        self.add(x[take], y[take], task)

    def task_counts(self) -> list[int]:
        """Number of stored examples of each task, in the order the tasks were added
        (examples are appended task by task). One host sync."""
        if self.task is None:
            return []
        return torch.unique_consecutive(self.task, return_counts=True)[1].tolist()

    def floats_by_task(self, num_tasks: int) -> list[float]:
        """Float32 equivalents stored per task (see :func:`floats_by_task`)."""
        return floats_by_task(self.x, self.y, self.task, num_tasks)

    def add(self, x: torch.Tensor, y: torch.Tensor, task: int) -> None:
        """Append examples ``x (K, ...)``, ``y (K,)`` of ``task``."""
        t = torch.full_like(y, task)
        if self.y is None:
            self.x, self.y, self.task = x.clone(), y.clone(), t
        else:
            self.x = torch.cat([self.x, x])
            self.y = torch.cat([self.y, y])
            self.task = torch.cat([self.task, t])


class ReservoirBuffer:
    """A replay buffer of at most ``capacity`` examples filled by reservoir sampling
    (Vitter 1985, Algorithm R), as in ER-Reservoir (Chaudhry et al. 2019, "On Tiny Episodic
    Memories in Continual Learning", arXiv 1902.10486; Riemer et al. 2019, MER): after a stream
    of ``n >= capacity`` examples, every example seen so far is in the buffer with probability
    ``capacity / n``.

    Sequential semantics: the i-th example of the stream (0-based) goes to slot i while
    ``i < capacity``; afterwards it draws ``j`` uniform in ``{0, ..., i}`` and replaces slot j
    when ``j < capacity``. ``add`` applies this to a whole batch with tensor ops: the draws of
    the items are independent of each other, so they are made at once; when several items of
    one batch land in the same slot, the last of them (in stream order) wins, which is what the
    one-by-one algorithm leaves. Optional stored logits (DER, Buzzega et al. 2020) are written
    to the same slots as their examples. No host sync: the buffer has one extra "dump" row
    (index ``capacity``) that receives the items that are not kept, and random numbers come
    from a pool drawn from ``generator`` (CPU, the run's) and moved to the device in blocks.

    Attributes:
        x: ``(capacity + 1, *input_shape)`` storage, uint8 like the benchmark's data, on the
            device of the first batch added (row ``capacity`` is scratch; read ``x[:len(self)]``).
        y: int64 labels, same layout. task: int64 1-based task ids, same layout.
        logits: float ``(capacity + 1, C)`` logits stored with each example (same layout), or
            None when the examples were added without logits.
        seen: number of examples offered to the buffer so far.
    """

    #: random numbers drawn from the generator at a time
    POOL = 1 << 16

    def __init__(self, capacity: int, generator: torch.Generator) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.generator = generator
        self.seen = 0
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.task: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None
        self._pool: torch.Tensor | None = None
        self._pool_pos = 0

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def __getstate__(self) -> dict:
        """Pickled (resume state) without the generator: the owner attaches the run's
        generator again (its state is saved with the run's)."""
        state = dict(vars(self))
        state["generator"] = None
        return state

    def state_dict(self) -> dict:
        """The buffer's contents and counters, without the generator (:meth:`__getstate__`)."""
        return self.__getstate__()

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned, keeping the attached generator."""
        generator = self.generator
        vars(self).update(state)
        self.generator = generator if state.get("generator") is None else state["generator"]

    def uniform(self, k: int, device: torch.device) -> torch.Tensor:
        """``k`` float64 uniforms in [0, 1) on ``device``, taken from the pool."""
        if self._pool is None or self._pool.device != device or self._pool_pos + k > len(self._pool):
            size = max(self.POOL, 2 * k)
            self._pool = torch.rand(size, generator=self.generator, dtype=torch.float64).to(device)
            self._pool_pos = 0
        out = self._pool[self._pool_pos : self._pool_pos + k]
        self._pool_pos += k
        return out

    def add(self, x: torch.Tensor, y: torch.Tensor, task: int | torch.Tensor,
            logits: torch.Tensor | None = None) -> None:
        """Offer a batch ``x (B, ...)``, ``y (B,)`` of ``task`` (an int, or int64 ``(B,)``)
        to the buffer, in order; with ``logits`` float ``(B, C)`` (detached), stored in the
        same slots. A buffer takes logits with every batch or with none.

        Raises:
            ValueError: logits given to a buffer filled without them, or the reverse.
        """
        b, cap, device = len(y), self.capacity, y.device
        if b == 0:
            return
        if self.x is None:
            self.x = torch.zeros((cap + 1, *x.shape[1:]), dtype=x.dtype, device=device)
            self.y = torch.zeros(cap + 1, dtype=y.dtype, device=device)
            self.task = torch.zeros(cap + 1, dtype=torch.int64, device=device)
            if logits is not None:
                self.logits = torch.zeros((cap + 1, *logits.shape[1:]), dtype=logits.dtype,
                                          device=device)
        if (logits is None) != (self.logits is None):
            raise ValueError("a ReservoirBuffer takes logits with every batch or with none")
        pos = torch.arange(self.seen, self.seen + b, device=device)  # stream positions
        draw = (self.uniform(b, device) * (pos + 1)).long()  # uniform in {0..i}
        slot = torch.where(pos < cap, pos, draw).clamp_(max=cap)  # cap = not kept
        order = torch.arange(b, device=device)
        last = torch.full((cap + 1,), -1, dtype=torch.int64, device=device)
        last.scatter_reduce_(0, slot, order, reduce="amax")  # last item landing in each slot
        target = torch.where(last[slot] == order, slot, cap)  # earlier ones are overwritten
        self.x.index_copy_(0, target, x)
        self.y.index_copy_(0, target, y)
        tasks = task if isinstance(task, torch.Tensor) else torch.full_like(y, task)
        self.task.index_copy_(0, target, tasks.to(torch.int64))
        if logits is not None:
            self.logits.index_copy_(0, target, logits.to(self.logits.dtype))
        self.seen += b

    def floats_by_task(self, num_tasks: int) -> list[float]:
        """Float32 equivalents of the held examples (the first ``len(self)`` rows; the scratch
        row is not counted) per task of origin (see :func:`floats_by_task`)."""
        n = len(self)
        if self.y is None or n == 0:
            return [0.0] * num_tasks
        return floats_by_task(self.x[:n], self.y[:n], self.task[:n], num_tasks,
                              None if self.logits is None else self.logits[:n])

    def sample_index(self, k: int) -> torch.Tensor:
        """Slots of ``k`` distinct random stored examples (all of them, in random order, when
        the buffer holds ``<= k``): int64 ``(min(k, len(self)),)`` on the buffer's device.

        Raises:
            ValueError: the buffer is empty.
        """
        n = len(self)
        if self.x is None or n == 0:
            raise ValueError("sample() on an empty ReservoirBuffer")
        return torch.argsort(self.uniform(n, self.y.device))[: min(k, n)]

    def sample(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``k`` distinct random stored examples (:meth:`sample_index`): ``(x, y, task)``,
        new tensors.

        Raises:
            ValueError: the buffer is empty.
        """
        idx = self.sample_index(k)
        return self.x[idx], self.y[idx], self.task[idx]


def reservoir_stats(buffer: ReservoirBuffer | None) -> dict[str, Any]:
    """A replay strategy's ``stats()`` figures of its buffer: ``memory_size`` (examples held),
    ``examples_seen`` (offered so far), ``memory_per_task`` (task id as a string -> examples
    held). One host sync."""
    if buffer is None or len(buffer) == 0:
        return {"memory_size": 0, "examples_seen": 0, "memory_per_task": {}}
    ids, counts = torch.unique(buffer.task[: len(buffer)].cpu(), return_counts=True)
    return {"memory_size": len(buffer), "examples_seen": buffer.seen,
            "memory_per_task": {str(int(t)): int(c) for t, c in zip(ids, counts, strict=True)}}


def reservoir_floats(buffer: ReservoirBuffer | None, num_tasks: int) -> list[float]:
    """Float32 equivalents held per task by ``buffer`` (zeros when there is none yet)."""
    return [0.0] * num_tasks if buffer is None else buffer.floats_by_task(num_tasks)
