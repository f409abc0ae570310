"""Raw datasets (MNIST, CIFAR-100) read through torchvision from the data root, as whole uint8
tensors."""

from __future__ import annotations

from pathlib import Path

import torch

from cl_runner.errors import DatasetNotFoundError

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def load_mnist(root: str | Path, download: bool = True) -> tuple[torch.Tensor, ...]:
    """Load MNIST with torchvision from ``root`` (torchvision layout: ``root/MNIST/raw/*-ubyte``).

    Args:
        root: the data root (``data.root`` / ``CL_RUNNER_DATA``).
        download: when the files are missing, try to download them (needs a network).

    Returns:
        ``(train_x, train_y, test_x, test_y)``: images uint8 ``(N, 1, 28, 28)`` with values in
        0..255 and labels int64 ``(N,)``; N = 60,000 for training, 10,000 for test.

    Raises:
        DatasetNotFoundError: files missing and not downloadable; the message names the folder,
            the four expected files and ``CL_RUNNER_DATA``.
    """
    from torchvision.datasets import MNIST

    root = Path(root).expanduser().resolve()
    try:
        train = MNIST(str(root), train=True, download=download)
        test = MNIST(str(root), train=False, download=download)
    except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError here
        raw = root / "MNIST" / "raw"
        missing = [f for f in MNIST_FILES if not (raw / f).exists()]
        raise DatasetNotFoundError(
            f"MNIST not found in {raw} (missing: {', '.join(missing) or 'none; files unreadable'}).\n"
            f"Expected the four files {', '.join(MNIST_FILES)} in that folder "
            f"(gzipped copies '*.gz' also work).\n"
            f"{'Download failed (no network?): ' + str(exc).splitlines()[0] if download else 'Download is disabled (data.download=false).'}\n"
            "Point the runner at a folder that holds MNIST/raw/ with data.root=PATH or the "
            "CL_RUNNER_DATA environment variable."
        ) from None
    return (
        train.data.unsqueeze(1).contiguous(),
        train.targets.long(),
        test.data.unsqueeze(1).contiguous(),
        test.targets.long(),
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
        DatasetNotFoundError: files missing and not downloadable, or (with
            ``verify_checksums``) files that are not the official ones; the message names the
            folder, the expected files, ``CL_RUNNER_DATA`` and the key to change.
    """
    root = Path(root).expanduser().resolve()
    folder = root / CIFAR100_FOLDER
    missing = [f for f in CIFAR100_FILES if not (folder / f).is_file()]
    reader = _cifar100_reader(verify_checksums)
    try:
        # download only when something is missing, so that present files are never replaced
        train = reader(str(root), train=True, download=download and bool(missing))
        test = reader(str(root), train=False, download=False)
    except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError here
        missing = [f for f in CIFAR100_FILES if not (folder / f).is_file()]
        if not missing and verify_checksums:
            raise DatasetNotFoundError(
                f"CIFAR-100 files in {folder} do not match the official archive's checksums "
                f"({exc}).\nRe-download cifar-100-python.tar.gz, or, to use an archive in the same "
                "format that is not the official one (e.g. a generated test archive), set "
                "benchmark.verify_checksums=false."
            ) from None
        if not missing:
            raise DatasetNotFoundError(f"CIFAR-100 files in {folder} could not be read: {exc}") from None
        raise DatasetNotFoundError(
            f"CIFAR-100 not found in {folder} (missing: {', '.join(missing)}).\n"
            f"Expected the python version of the archive, files {', '.join(CIFAR100_FILES)} in "
            "that folder (from https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz, "
            f"extracted in {root}).\n"
            f"{'Download failed (no network?): ' + str(exc).splitlines()[0] if download else 'Download is disabled (data.download=false).'}\n"
            "Point the runner at a folder that holds cifar-100-python/ with data.root=PATH or the "
            "CL_RUNNER_DATA environment variable."
        ) from None
    return (
        torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous(),  # HWC -> CHW
        torch.tensor(train.targets, dtype=torch.long),
        torch.from_numpy(test.data).permute(0, 3, 1, 2).contiguous(),
        torch.tensor(test.targets, dtype=torch.long),
        list(train.classes),
    )
