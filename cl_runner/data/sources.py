"""Raw datasets (MNIST, CIFAR-100) read through torchvision from the data root, as whole uint8
tensors."""

from __future__ import annotations

from pathlib import Path

import torch

from cl_runner.data.files import (
    check_mnist_files,
    cifar100_file_problem,
    md5_problem,
    removing_created_folders,
)
from cl_runner.errors import DatasetCorruptError, DatasetNotFoundError, exception_line

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def load_mnist(root: str | Path, download: bool = True) -> tuple[torch.Tensor, ...]:
    """Load MNIST with torchvision from ``root`` (torchvision layout: ``root/MNIST/raw/*-ubyte``).

    Before torchvision reads the files, their idx headers (magic number, dimensions) and sizes
    are checked (:func:`~cl_runner.data.files.check_mnist_files`: 16 bytes read per file).

    Args:
        root: the data root (``data.root`` / ``CL_RUNNER_DATA``).
        download: when files are missing, try to download them (needs a network). A failed
            download removes the (empty) folders it created.

    Returns:
        ``(train_x, train_y, test_x, test_y)``: images uint8 ``(N, 1, 28, 28)`` with values in
        0..255 and labels int64 ``(N,)``; N = 60,000 for training, 10,000 for test.

    Raises:
        DatasetNotFoundError: files missing and not downloadable; one line naming the folder,
            the missing files, the download's own error, the four expected files and
            ``CL_RUNNER_DATA``.
        DatasetCorruptError: a file is truncated, has a wrong header or cannot be read; the
            message names the file and the cause.
    """
    from torchvision.datasets import MNIST

    root = Path(root).expanduser().resolve()
    raw = root / "MNIST" / "raw"
    missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
    if missing and not download:
        raise _mnist_not_found(raw, missing, "download is disabled (data.download=false)")
    if missing:
        try:
            with removing_created_folders(raw):
                MNIST(str(root), train=True, download=True)  # fetches all four files
        except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError here
            missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
            if missing:
                raise _mnist_not_found(raw, missing,
                                       f"download failed: {exception_line(exc)}") from None
    check_mnist_files(raw)
    try:
        train = MNIST(str(root), train=True, download=False)
        test = MNIST(str(root), train=False, download=False)
    except Exception as exc:
        raise DatasetCorruptError(
            f"MNIST files in {raw} could not be read: {type(exc).__name__}: "
            f"{exception_line(exc)}") from None
    return (
        train.data.unsqueeze(1).contiguous(),
        train.targets.long(),
        test.data.unsqueeze(1).contiguous(),
        test.targets.long(),
    )


def _mnist_not_found(raw: Path, missing: list[str], cause: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"MNIST not found in {raw} (missing: {', '.join(missing)}; {cause}). Expected the four "
        f"files {', '.join(MNIST_FILES)} in that folder (gzipped copies '*.gz' also work); "
        "point the runner at a folder that holds MNIST/raw/ with data.root=PATH or the "
        "CL_RUNNER_DATA environment variable."
    )


CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_FILES = ("train", "test", "meta")


def _cifar100_reader(verify_checksums: bool):
    """torchvision's ``CIFAR100`` class, or a subclass that checks only that the files exist
    (torchvision's ``check_integrity(path, md5=None)``), for archives in the same format that
    are not the official files (e.g. generated for tests). Reading is torchvision's own code."""
    from torchvision.datasets import CIFAR100

    if verify_checksums:
        return CIFAR100

    class CIFAR100AnyChecksum(CIFAR100):
        train_list = [[name, None] for name, _ in CIFAR100.train_list]
        test_list = [[name, None] for name, _ in CIFAR100.test_list]
        meta = {**CIFAR100.meta, "md5": None}

    return CIFAR100AnyChecksum


def load_cifar100(root: str | Path, download: bool = True, verify_checksums: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Load CIFAR-100 with torchvision from ``root`` (layout ``root/cifar-100-python/{train,test,meta}``,
    the python pickles of the official archive ``cifar-100-python.tar.gz``).

    Args:
        root: the data root (``data.root`` / ``CL_RUNNER_DATA``).
        download: when files are missing, try to download and extract the archive (~161 MB;
            needs a network). Files that are present are never re-downloaded.
        verify_checksums: check the files' MD5 sums against the official archive (torchvision's
            check). ``False`` accepts any archive in the same format.

    Returns:
        ``(train_x, train_y, test_x, test_y, class_names)``: images uint8 ``(N, 3, 32, 32)``
        (channels R, G, B; values 0..255), fine labels int64 ``(N,)`` in 0..99, N = 50,000 for
        training and 10,000 for test; ``class_names`` the 100 fine label names in label order.

    Raises:
        DatasetNotFoundError: files missing and not downloadable (one line naming the
            folder, the missing files, the download's own error and ``CL_RUNNER_DATA``), or
            (with ``verify_checksums``) well-formed files that are not the official ones (the
            message names each file, its MD5 and ``benchmark.verify_checksums``).
        DatasetCorruptError: a file is truncated or not a CIFAR-100 pickle; the message names
            the file and the cause.
    """
    root = Path(root).expanduser().resolve()
    folder = root / CIFAR100_FOLDER
    missing = [f for f in CIFAR100_FILES if not (folder / f).is_file()]
    reader = _cifar100_reader(verify_checksums)
    if missing and not download:
        raise _cifar100_not_found(root, missing, "download is disabled (data.download=false)")
    if missing:  # download only when something is missing: present files are never replaced
        try:
            with removing_created_folders(root):
                reader(str(root), train=True, download=True)
        except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError here
            missing = [f for f in CIFAR100_FILES if not (folder / f).is_file()]
            if missing:
                cause = f"download failed: {exception_line(exc)}{_cifar100_archive_note(root)}"
                raise _cifar100_not_found(root, missing, cause) from None
    try:
        train = reader(str(root), train=True, download=False)
        test = reader(str(root), train=False, download=False)
    except Exception as exc:
        raise _cifar100_read_error(folder, verify_checksums, exc) from None
    if len(train.classes) != 100:
        raise DatasetCorruptError(f"{folder / 'meta'}: {len(train.classes)} fine label names, "
                                  "expected 100; replace it with the file from "
                                  "cifar-100-python.tar.gz")
    for name, split in (("train", train), ("test", test)):
        if split.targets and not 0 <= min(split.targets) <= max(split.targets) < 100:
            raise DatasetCorruptError(f"{folder / name}: fine labels outside 0..99 "
                                      f"({min(split.targets)}..{max(split.targets)})")
    return (
        torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous(),  # HWC -> CHW
        torch.tensor(train.targets, dtype=torch.long),
        torch.from_numpy(test.data).permute(0, 3, 1, 2).contiguous(),
        torch.tensor(test.targets, dtype=torch.long),
        list(train.classes),
    )


def _cifar100_not_found(root: Path, missing: list[str], cause: str) -> DatasetNotFoundError:
    folder = root / CIFAR100_FOLDER
    return DatasetNotFoundError(
        f"CIFAR-100 not found in {folder} (missing: {', '.join(missing)}; {cause}). Expected "
        f"the python version of the archive, files {', '.join(CIFAR100_FILES)} in that folder "
        "(from https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz, extracted in "
        f"{root}); point the runner at a folder that holds cifar-100-python/ with "
        "data.root=PATH or the CL_RUNNER_DATA environment variable."
    )


def _cifar100_archive_note(root: Path) -> str:
    """``"; <archive>: N bytes, MD5 ..."`` when an archive that is not the official one lies in
    ``root`` (torchvision then tries to download a fresh one), else ``""``."""
    from torchvision.datasets import CIFAR100

    archive = root / CIFAR100.filename
    problem = md5_problem(archive, CIFAR100.tgz_md5) if archive.is_file() else None
    return f"; {archive}: {problem} (truncated or corrupt?)" if problem else ""


def _cifar100_read_error(folder: Path, verify_checksums: bool, exc: Exception) -> Exception:
    """The error to report when torchvision could not read the files in ``folder`` (all
    present): the first file that is no CIFAR-100 pickle, else (with ``verify_checksums``) the
    files whose MD5 is not the official one, else torchvision's own error."""
    from torchvision.datasets import CIFAR100

    for name in CIFAR100_FILES:
        problem = cifar100_file_problem(folder / name)
        if problem is not None:
            return DatasetCorruptError(f"{folder / name}: {problem}; replace it with the file "
                                       "from cifar-100-python.tar.gz")
    if verify_checksums:
        official = dict(CIFAR100.train_list + CIFAR100.test_list)
        official[CIFAR100.meta["filename"]] = CIFAR100.meta["md5"]
        bad = [f"{name}: {problem}" for name in CIFAR100_FILES
               if (problem := md5_problem(folder / name, official[name])) is not None]
        if bad:
            return DatasetNotFoundError(
                f"CIFAR-100 files in {folder} do not match the official archive's checksums "
                f"({'; '.join(bad)}). Re-download cifar-100-python.tar.gz, or, to use an archive "
                "in the same format that is not the official one (e.g. a generated test "
                "archive), set benchmark.verify_checksums=false.")
    return DatasetCorruptError(f"CIFAR-100 files in {folder} could not be read: "
                               f"{type(exc).__name__}: {exception_line(exc)}")
