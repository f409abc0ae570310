"""Checks of dataset files before and after torchvision reads them, so that a bad file is
reported by name with its cause (truncated, wrong header, unreadable pickle), and the clean-up
of folders a failed download created."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

from cl_runner.errors import DatasetCorruptError, exception_line

#: MNIST file -> (idx magic number, dimensions): unsigned bytes (type 0x08), 3 or 1 dimensions
MNIST_LAYOUT: dict[str, tuple[int, tuple[int, ...]]] = {
    "train-images-idx3-ubyte": (0x00000803, (60_000, 28, 28)),
    "train-labels-idx1-ubyte": (0x00000801, (60_000,)),
    "t10k-images-idx3-ubyte": (0x00000803, (10_000, 28, 28)),
    "t10k-labels-idx1-ubyte": (0x00000801, (10_000,)),
}


def idx_file_problem(path: Path, magic: int, dims: tuple[int, ...]) -> str | None:
    """What is wrong with an idx file (the MNIST format: a big-endian 4-byte magic number
    ``0x0000TTNN``, then ``NN`` big-endian 4-byte dimensions, then the data), or ``None``.

    Reads only the header (at most 16 bytes) and the file size.

    Args:
        path: the file.
        magic: the expected magic number (``0x0803``: unsigned bytes, 3 dimensions).
        dims: the expected dimensions, e.g. ``(60000, 28, 28)``.

    Returns:
        e.g. ``"19,999,984 bytes, expected 47,040,016 (16-byte header + 60,000 x 28 x 28)"``.
    """
    header_size = 4 * (1 + len(dims))
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(header_size)
    if size < header_size:
        return f"{size:,} bytes, too short for its {header_size}-byte idx header"
    found_magic = int.from_bytes(header[:4], "big")
    if found_magic != magic:
        return (f"magic number 0x{found_magic:08x}, expected 0x{magic:08x} (an idx file of "
                f"unsigned bytes with {len(dims)} dimension{'s' if len(dims) > 1 else ''}): "
                "a corrupt header or not this MNIST file")
    found = tuple(int.from_bytes(header[4 * (i + 1):4 * (i + 2)], "big") for i in range(len(dims)))
    shape = " x ".join(f"{d:,}" for d in dims)
    if found != dims:
        return f"header gives dimensions {' x '.join(f'{d:,}' for d in found)}, expected {shape}"
    expected = header_size + math.prod(dims)
    if size != expected:
        cause = "truncated" if size < expected else "trailing bytes"
        return (f"{size:,} bytes, expected {expected:,} ({header_size}-byte header + {shape}; "
                f"{cause})")
    return None


def check_mnist_files(raw: Path) -> None:
    """Check the headers and sizes of the four MNIST files in ``raw`` (all present).

    Raises:
        DatasetCorruptError: ``"<raw>/train-images-idx3-ubyte: 19,999,984 bytes, expected
            47,040,016 (...)"`` for the first bad file.
    """
    for name, (magic, dims) in MNIST_LAYOUT.items():
        problem = idx_file_problem(raw / name, magic, dims)
        if problem is not None:
            raise DatasetCorruptError(
                f"{raw / name}: {problem}; replace the file (or delete it so that the next run "
                "downloads it)")


def check_not_directories(folder: Path, names: tuple[str, ...] | list[str]) -> None:
    """Refuse a directory where a dataset file should be (else it would be reported missing,
    or a download would fail on it).

    Raises:
        DatasetCorruptError: ``"<folder>/<name>: a directory, expected the file <name>..."``
            for the first such path.
    """
    for name in names:
        if (folder / name).is_dir():
            raise DatasetCorruptError(
                f"{folder / name}: a directory, expected the file {name}; move it away so that "
                "the file can take its place")


def check_readable(folder: Path, names: tuple[str, ...] | list[str]) -> None:
    """Open each present file of ``names`` in ``folder`` and read one byte, so that a file the
    run may not read is named (rather than a ``PermissionError`` traceback from torchvision).

    Raises:
        DatasetCorruptError: ``"<path>: cannot be read (PermissionError: Permission denied)..."``.
    """
    for name in names:
        path = folder / name
        if not path.is_file():
            continue
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as exc:
            cause = exc.strerror or exception_line(exc)
            raise DatasetCorruptError(
                f"{path}: cannot be read ({type(exc).__name__}: {cause}); give this user read "
                "permission on it or point data.root elsewhere") from None


def gunzip_copies(folder: Path, names: tuple[str, ...] | list[str]) -> None:
    """For each file of ``names`` missing in ``folder`` whose gzipped copy ``<name>.gz`` is
    there, write the decompressed file beside it (as torchvision does after a download), via a
    temporary file renamed into place, so an interrupted run leaves no partial file. The
    ``.gz`` file is kept.

    Raises:
        DatasetCorruptError: a ``.gz`` that is not a readable gzip file (named, with the
            cause), or a folder where the file cannot be written.
    """
    for name in names:
        target, packed = folder / name, folder / f"{name}.gz"
        if target.exists() or not packed.is_file():
            continue
        tmp = folder / f".{name}.{os.getpid()}.partial"
        try:
            with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            os.replace(tmp, target)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            tmp.unlink(missing_ok=True)
            cause = getattr(exc, "strerror", None) or exception_line(exc)
            raise DatasetCorruptError(
                f"{packed}: could not be decompressed to {target} ({type(exc).__name__}: "
                f"{cause}); replace the .gz file or put the decompressed file there") from None


def cifar_file_problem(path: Path, is_meta: bool, labels_key: str, names_key: str,
                       num_classes: int) -> str | None:
    """What keeps torchvision from reading a CIFAR python file (a batch: a pickled dict with
    ``data`` uint8 ``(N, 3072)`` and ``labels_key`` (N); the meta file: a dict with the
    ``num_classes`` ``names_key``), or ``None``. Unpickles the whole file (CIFAR-100's train:
    150 MB).

    Args:
        path: the file.
        is_meta: whether it is the meta file (``meta``, ``batches.meta``).
        labels_key: ``fine_labels`` (CIFAR-100) or ``labels`` (CIFAR-10).
        names_key: ``fine_label_names`` or ``label_names``.
        num_classes: 100 or 10.
    """
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as exc:  # truncated: EOFError / UnpicklingError; garbage: many kinds
        return (f"{path.stat().st_size:,} bytes, not a readable pickle "
                f"({type(exc).__name__}: {exception_line(exc)}); truncated or corrupt")
    if not isinstance(entry, dict):
        return f"holds a {type(entry).__name__}, expected a dict"
    if is_meta:
        names = entry.get(names_key)
        if not isinstance(names, list) or len(names) != num_classes:
            return f"no list of {num_classes} '{names_key}'"
        return None
    data, labels = entry.get("data"), entry.get(labels_key)
    if data is None or labels is None:
        return f"no {'data' if data is None else labels_key} entry"
    shape = tuple(getattr(data, "shape", ()))
    if len(shape) != 2 or shape[1] != 3072 or str(getattr(data, "dtype", "")) != "uint8":
        return f"'data' of shape {shape}, expected uint8 (N, 3072)"
    if len(labels) != shape[0]:
        return f"{shape[0]:,} images but {len(labels):,} {labels_key.replace('_', ' ')}"
    return None


def md5_problem(path: Path, expected: str) -> str | None:
    """``"N bytes, MD5 X, not the official file's Y"`` when the file's MD5 differs, else ``None``."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    found = digest.hexdigest()
    if found == expected:
        return None
    return f"{path.stat().st_size:,} bytes, MD5 {found}, not the official file's {expected}"


@contextlib.contextmanager
def removing_created_folders(folder: Path) -> Iterator[None]:
    """Run the body (a download into ``folder``); if it raises, remove the folders on the way
    to ``folder`` that did not exist before and are empty now, deepest first, so that a
    mistyped data root leaves nothing behind. Files (a partial download) are never removed."""
    created = []
    path = folder
    while not path.exists():
        created.append(path)
        if path.parent == path:
            break
        path = path.parent
    try:
        yield
    except BaseException:
        for path in created:  # deepest first
            try:
                os.rmdir(path)
            except FileNotFoundError:
                continue
            except OSError:  # not empty: keep it and its parents
                break
        raise
