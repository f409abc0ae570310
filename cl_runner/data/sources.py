"""Raw datasets (MNIST, CIFAR-10, CIFAR-100) read through torchvision from the data root, as whole uint8
tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cl_runner.data.files import (
    check_mnist_files,
    check_not_directories,
    check_readable,
    cifar_file_problem,
    gunzip_copies,
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
        DatasetCorruptError: a file is truncated, has a wrong header, holds labels outside
            0..9, cannot be read (permissions), is a directory, or is a ``.gz`` copy that does
            not decompress; the message names the file and the cause.

    A missing file whose gzipped copy ``<name>.gz`` is present is decompressed beside it first
    (:func:`~cl_runner.data.files.gunzip_copies`).
    """
    from torchvision.datasets import MNIST

    root = Path(root).expanduser().resolve()
    raw = root / "MNIST" / "raw"
    check_not_directories(raw, MNIST_FILES)
    gunzip_copies(raw, MNIST_FILES)
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
    check_readable(raw, MNIST_FILES)
    check_mnist_files(raw)
    try:
        train = MNIST(str(root), train=True, download=False)
        test = MNIST(str(root), train=False, download=False)
    except Exception as exc:
        raise DatasetCorruptError(
            f"MNIST files in {raw} could not be read: {type(exc).__name__}: "
            f"{exception_line(exc)}") from None
    for name, split in (("train-labels-idx1-ubyte", train), ("t10k-labels-idx1-ubyte", test)):
        low, high = int(split.targets.min()), int(split.targets.max())
        if low < 0 or high > 9:
            raise DatasetCorruptError(f"{raw / name}: labels outside 0..9 ({low}..{high}); "
                                      "replace the file (or delete it so that the next run "
                                      "downloads it)")
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


@dataclass(frozen=True)
class CifarFormat:
    """The python version of a CIFAR archive, as torchvision's ``CIFAR10``/``CIFAR100`` read it.

    Attributes:
        name: ``"CIFAR-100"``, for messages.
        folder: the archive's folder in the data root (``cifar-100-python``).
        files: its files: the training batches, the test batch, the meta file (last).
        labels_key: the labels' entry in a batch (``fine_labels`` / ``labels``).
        names_key: the class names' entry in the meta file.
        num_classes: C.
        reader: torchvision's class name (``"CIFAR100"``).
    """

    name: str
    folder: str
    files: tuple[str, ...]
    labels_key: str
    names_key: str
    num_classes: int
    reader: str

    @property
    def meta_file(self) -> str:
        return self.files[-1]

    @property
    def archive(self) -> str:
        """The official archive's file name, e.g. ``cifar-100-python.tar.gz``."""
        return f"{self.name.lower()}-python.tar.gz"

    @property
    def labels_word(self) -> str:
        """``fine labels`` / ``labels``, for messages."""
        return self.labels_key.replace("_", " ")


CIFAR100_FORMAT = CifarFormat("CIFAR-100", "cifar-100-python", ("train", "test", "meta"),
                              "fine_labels", "fine_label_names", 100, "CIFAR100")
CIFAR10_FORMAT = CifarFormat("CIFAR-10", "cifar-10-batches-py",
                             (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                              "batches.meta"),
                             "labels", "label_names", 10, "CIFAR10")
CIFAR100_FOLDER = CIFAR100_FORMAT.folder
CIFAR100_FILES = CIFAR100_FORMAT.files
CIFAR10_FOLDER = CIFAR10_FORMAT.folder
CIFAR10_FILES = CIFAR10_FORMAT.files


def _torchvision_class(fmt: CifarFormat):
    import torchvision.datasets

    return getattr(torchvision.datasets, fmt.reader)


def _cifar_reader(fmt: CifarFormat, verify_checksums: bool):
    """torchvision's ``CIFAR10``/``CIFAR100`` class, or a subclass that checks only that the
    files exist (torchvision's ``check_integrity(path, md5=None)``), for archives in the same
    format that are not the official files (e.g. generated for tests). Reading is
    torchvision's own code."""
    official = _torchvision_class(fmt)
    if verify_checksums:
        return official

    class AnyChecksum(official):
        train_list = [[name, None] for name, _ in official.train_list]
        test_list = [[name, None] for name, _ in official.test_list]
        meta = {**official.meta, "md5": None}

    AnyChecksum.__name__ = f"{fmt.reader}AnyChecksum"
    return AnyChecksum


def _cifar100_reader(verify_checksums: bool):
    """:func:`_cifar_reader` of CIFAR-100."""
    return _cifar_reader(CIFAR100_FORMAT, verify_checksums)


def load_cifar(fmt: CifarFormat, root: str | Path, download: bool = True,
               verify_checksums: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Load a CIFAR dataset with torchvision from ``root`` (layout ``root/<fmt.folder>/<files>``,
    the python pickles of the official archive, e.g. ``cifar-100-python.tar.gz``).

    Args:
        fmt: :data:`CIFAR100_FORMAT` or :data:`CIFAR10_FORMAT`.
        root: the data root (``data.root`` / ``CL_RUNNER_DATA``).
        download: when files are missing, try to download and extract the archive (~161 MB
            (CIFAR-100), ~163 MB (CIFAR-10); needs a network). Files that are present are never
            re-downloaded.
        verify_checksums: check the files' MD5 sums against the official archive (torchvision's
            check). ``False`` accepts any archive in the same format.

    Returns:
        ``(train_x, train_y, test_x, test_y, class_names)``: images uint8 ``(N, 3, 32, 32)``
        (channels R, G, B; values 0..255), labels int64 ``(N,)`` in 0..C-1, N = 50,000 for
        training and 10,000 for test; ``class_names`` the C label names in label order.

    Raises:
        DatasetNotFoundError: files missing and not downloadable (one line naming the
            folder, the missing files, the download's own error and ``CL_RUNNER_DATA``), or
            (with ``verify_checksums``) well-formed files that are not the official ones (the
            message names each file, its MD5 and ``benchmark.verify_checksums``).
        DatasetCorruptError: a file is truncated, unreadable, not a CIFAR pickle, or holds
            labels outside 0..C-1; the message names the file and the cause.
    """
    root = Path(root).expanduser().resolve()
    folder = root / fmt.folder
    check_not_directories(folder, fmt.files)
    missing = [f for f in fmt.files if not (folder / f).is_file()]
    reader = _cifar_reader(fmt, verify_checksums)
    if missing and not download:
        raise _cifar_not_found(fmt, root, missing, "download is disabled (data.download=false)")
    if missing:  # download only when something is missing: present files are never replaced
        try:
            with removing_created_folders(root):
                reader(str(root), train=True, download=True)
        except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError here
            missing = [f for f in fmt.files if not (folder / f).is_file()]
            if missing:
                cause = f"download failed: {exception_line(exc)}{_cifar_archive_note(fmt, root)}"
                raise _cifar_not_found(fmt, root, missing, cause) from None
    check_readable(folder, fmt.files)
    try:
        train = reader(str(root), train=True, download=False)
        test = reader(str(root), train=False, download=False)
    except Exception as exc:
        raise _cifar_read_error(fmt, folder, verify_checksums, exc) from None
    n = fmt.num_classes
    if len(train.classes) != n:
        raise DatasetCorruptError(f"{folder / fmt.meta_file}: {len(train.classes)} "
                                  f"{fmt.labels_word[:-1]} names, expected {n}; replace it with "
                                  f"the file from {fmt.archive}")
    for name, split in ((fmt.files[0] if n == 100 else "data_batch_*", train),
                        (fmt.files[-2], test)):
        if split.targets and not 0 <= min(split.targets) <= max(split.targets) < n:
            raise DatasetCorruptError(f"{folder / name}: {fmt.labels_word} outside 0..{n - 1} "
                                      f"({min(split.targets)}..{max(split.targets)})")
    return (
        torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous(),  # HWC -> CHW
        torch.tensor(train.targets, dtype=torch.long),
        torch.from_numpy(test.data).permute(0, 3, 1, 2).contiguous(),
        torch.tensor(test.targets, dtype=torch.long),
        list(train.classes),
    )


def load_cifar100(root: str | Path, download: bool = True, verify_checksums: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """CIFAR-100 (``root/cifar-100-python/{train,test,meta}``): :func:`load_cifar`; fine
    labels in 0..99."""
    return load_cifar(CIFAR100_FORMAT, root, download, verify_checksums)


def load_cifar10(root: str | Path, download: bool = True, verify_checksums: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """CIFAR-10 (``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``):
    :func:`load_cifar`; labels in 0..9."""
    return load_cifar(CIFAR10_FORMAT, root, download, verify_checksums)


def _cifar_not_found(fmt: CifarFormat, root: Path, missing: list[str],
                     cause: str) -> DatasetNotFoundError:
    folder = root / fmt.folder
    return DatasetNotFoundError(
        f"{fmt.name} not found in {folder} (missing: {', '.join(missing)}; {cause}). Expected "
        f"the python version of the archive, files {', '.join(fmt.files)} in that folder "
        f"(from https://www.cs.toronto.edu/~kriz/{fmt.archive}, extracted in "
        f"{root}); point the runner at a folder that holds {fmt.folder}/ with "
        "data.root=PATH or the CL_RUNNER_DATA environment variable."
    )


def _cifar_archive_note(fmt: CifarFormat, root: Path) -> str:
    """``"; <archive>: N bytes, MD5 ..."`` when an archive that is not the official one lies in
    ``root`` (torchvision then tries to download a fresh one), else ``""``."""
    official = _torchvision_class(fmt)
    archive = root / official.filename
    problem = md5_problem(archive, official.tgz_md5) if archive.is_file() else None
    return f"; {archive}: {problem} (truncated or corrupt?)" if problem else ""


def _cifar_read_error(fmt: CifarFormat, folder: Path, verify_checksums: bool,
                      exc: Exception) -> Exception:
    """The error to report when torchvision could not read the files in ``folder`` (all
    present): the first file that is no CIFAR pickle, else (with ``verify_checksums``) the
    files whose MD5 is not the official one, else torchvision's own error."""
    official_class = _torchvision_class(fmt)
    for name in fmt.files:
        problem = cifar_file_problem(folder / name, name == fmt.meta_file, fmt.labels_key,
                                     fmt.names_key, fmt.num_classes)
        if problem is not None:
            return DatasetCorruptError(f"{folder / name}: {problem}; replace it with the file "
                                       f"from {fmt.archive}")
    if verify_checksums:
        official = dict(official_class.train_list + official_class.test_list)
        official[official_class.meta["filename"]] = official_class.meta["md5"]
        bad = [f"{name}: {problem}" for name in fmt.files
               if (problem := md5_problem(folder / name, official[name])) is not None]
        if bad:
            return DatasetNotFoundError(
                f"{fmt.name} files in {folder} do not match the official archive's checksums "
                f"({'; '.join(bad)}). Re-download {fmt.archive}, or, to use an archive "
                "in the same format that is not the official one (e.g. a generated test "
                "archive), set benchmark.verify_checksums=false.")
    return DatasetCorruptError(f"{fmt.name} files in {folder} could not be read: "
                               f"{type(exc).__name__}: {exception_line(exc)}")
