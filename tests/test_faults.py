"""Bad input gets one clear line: corrupt and truncated dataset files are named with their
cause, a failed download reports its own error and leaves no folders behind, and value checks
that need no data run before any file is read."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import torch

from cl_runner.checks import check_at_least_one, check_value
from cl_runner.data.cifar import write_cifar100_archive
from cl_runner.data.files import MNIST_LAYOUT
from cl_runner.data.sources import MNIST_FILES, load_cifar100, load_mnist
from cl_runner.errors import (
    CLRunnerError,
    ConfigError,
    DatasetCorruptError,
    DatasetNotFoundError,
    exception_line,
)
from tests.conftest import compose_run

#: a local port nothing listens on: a download from it fails at once, network or not
DEAD_URL = "http://127.0.0.1:9/"


def mnist_copy(mnist_root: Path, dest: Path, name: str, data: bytes) -> Path:
    """A data root ``dest`` whose ``MNIST/raw`` holds ``data`` as file ``name`` and links to
    the three other real files. Returns the bad file's path."""
    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for other in MNIST_FILES:
        if other != name:
            (raw / other).symlink_to(mnist_root / "MNIST" / "raw" / other)
    (raw / name).write_bytes(data)
    return raw / name


def real_bytes(mnist_root: Path, name: str) -> bytes:
    return (mnist_root / "MNIST" / "raw" / name).read_bytes()


# ---------------------------------------------------------------- MNIST files

def test_truncated_mnist_file_names_file_and_sizes(mnist_root, tmp_path):
    name = "train-images-idx3-ubyte"
    bad = mnist_copy(mnist_root, tmp_path, name, real_bytes(mnist_root, name)[:19_999_984])
    with pytest.raises(DatasetCorruptError) as info:
        load_mnist(tmp_path, download=True)  # present files are never downloaded again
    msg = str(info.value)
    assert str(bad) in msg and "19,999,984 bytes, expected 47,040,016" in msg
    assert "truncated" in msg and "\n" not in msg
    assert bad.stat().st_size == 19_999_984  # the file is left as it was


def test_corrupt_mnist_magic_number_names_file_and_cause(mnist_root, tmp_path):
    name = "t10k-labels-idx1-ubyte"
    data = bytearray(real_bytes(mnist_root, name))
    data[2:4] = b"\x09\x09"
    bad = mnist_copy(mnist_root, tmp_path, name, bytes(data))
    with pytest.raises(DatasetCorruptError) as info:
        load_mnist(tmp_path, download=False)
    msg = str(info.value)
    assert str(bad) in msg and "magic number 0x00000909, expected 0x00000801" in msg


def test_mnist_header_with_wrong_count_names_the_dimensions(mnist_root, tmp_path):
    name = "train-labels-idx1-ubyte"
    data = bytearray(real_bytes(mnist_root, name))
    data[4:8] = (59_999).to_bytes(4, "big")
    mnist_copy(mnist_root, tmp_path, name, bytes(data))
    with pytest.raises(DatasetCorruptError, match=r"train-labels-idx1-ubyte: header gives "
                                                  r"dimensions 59,999, expected 60,000"):
        load_mnist(tmp_path, download=False)


@pytest.mark.parametrize("size", [0, 7])
def test_mnist_file_shorter_than_its_header(mnist_root, tmp_path, size):
    name = "t10k-images-idx3-ubyte"
    mnist_copy(mnist_root, tmp_path, name, real_bytes(mnist_root, name)[:size])
    with pytest.raises(DatasetCorruptError,
                       match=rf"t10k-images-idx3-ubyte: {size} bytes, too short for its 16-byte"):
        load_mnist(tmp_path, download=False)


def test_mnist_file_with_trailing_bytes(mnist_root, tmp_path):
    name = "t10k-labels-idx1-ubyte"
    mnist_copy(mnist_root, tmp_path, name, real_bytes(mnist_root, name) + b"\0")
    with pytest.raises(DatasetCorruptError, match="10,009 bytes, expected 10,008"):
        load_mnist(tmp_path, download=False)


def test_real_mnist_passes_the_checks(mnist_root):
    train_x, train_y, test_x, test_y = load_mnist(mnist_root, download=False)
    assert train_x.shape == (60_000, 1, 28, 28) and test_y.shape == (10_000,)
    for name, (_, dims) in MNIST_LAYOUT.items():
        assert (mnist_root / "MNIST" / "raw" / name).stat().st_size == 4 * (1 + len(dims)) + \
            int(torch.tensor(dims).prod())


def test_mnist_labels_outside_0_to_9_name_the_file(mnist_root, tmp_path):
    name = "t10k-labels-idx1-ubyte"
    data = bytearray(real_bytes(mnist_root, name))
    data[8 + 5] = 12  # the 6th test label
    bad = mnist_copy(mnist_root, tmp_path, name, bytes(data))
    with pytest.raises(DatasetCorruptError) as info:
        load_mnist(tmp_path, download=False)
    msg = str(info.value)
    assert msg.startswith(f"{bad}: labels outside 0..9 (0..12)") and "\n" not in msg


def test_unreadable_mnist_file_names_the_file_and_cause(mnist_root, tmp_path, monkeypatch):
    """A file the user may not read (as root, permissions do not stop reads: the open is made
    to fail as it would for another user)."""
    from cl_runner.data import files

    name = "train-images-idx3-ubyte"
    bad = mnist_copy(mnist_root, tmp_path, name, real_bytes(mnist_root, name))
    bad.chmod(0)
    real_open = open

    def deny(path, *args, **kwargs):
        if Path(path) == bad:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    if os.geteuid() == 0:
        monkeypatch.setattr(files, "open", deny, raising=False)
    with pytest.raises(DatasetCorruptError) as info:
        load_mnist(tmp_path, download=False)
    msg = str(info.value)
    assert msg.startswith(f"{bad}: cannot be read (PermissionError: Permission denied)")
    assert "\n" not in msg


def test_gzipped_mnist_copies_are_read(mnist_root, tmp_path):
    """Only ``*.gz`` copies (as torchvision downloads them): decompressed beside them, read."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / f"{name}.gz").write_bytes(gzip.compress(real_bytes(mnist_root, name)))
    got = load_mnist(tmp_path, download=False)
    want = load_mnist(mnist_root, download=False)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [*MNIST_FILES, *(f"{n}.gz" for n in MNIST_FILES)])  # no partial file left


def test_corrupt_gzipped_mnist_copy_names_the_gz(mnist_root, tmp_path):
    name = "t10k-images-idx3-ubyte"
    mnist_copy(mnist_root, tmp_path, name, b"")
    raw = tmp_path / "MNIST" / "raw"
    (raw / name).unlink()
    packed = gzip.compress(real_bytes(mnist_root, name))
    (raw / f"{name}.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DatasetCorruptError) as info:
        load_mnist(tmp_path, download=False)
    msg = str(info.value)
    assert msg.startswith(f"{raw / name}.gz: could not be decompressed") and "\n" not in msg
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [*(n for n in MNIST_FILES if n != name), f"{name}.gz"])


@pytest.mark.parametrize("dataset", ["mnist", "cifar100"])
def test_directory_where_a_data_file_should_be(mnist_root, tmp_path, dataset):
    if dataset == "mnist":
        name = "t10k-labels-idx1-ubyte"
        bad = mnist_copy(mnist_root, tmp_path, name, b"")
        bad.unlink()
        load = load_mnist
    else:
        write_cifar100_archive(tmp_path, train_per_class=1, test_per_class=1)
        bad = tmp_path / "cifar-100-python" / "test"
        bad.unlink()
        load = load_cifar100
    bad.mkdir()
    with pytest.raises(DatasetCorruptError) as info:
        load(tmp_path, download=True)  # never a download over it
    assert str(info.value).startswith(f"{bad}: a directory, expected the file {bad.name}")
    assert bad.is_dir() and not any(bad.iterdir())


@pytest.mark.parametrize("fault", ["labels", "directory", "gzip"])
def test_cl_run_prints_one_line_for_each_data_fault(mnist_root, tmp_path, cl_run_here, fault):
    name = "t10k-labels-idx1-ubyte"
    data = bytearray(real_bytes(mnist_root, name))
    data[8] = 200
    bad = mnist_copy(mnist_root, tmp_path / "data", name, bytes(data))
    expected = f"{bad}: labels outside 0..9 (0..200)"
    if fault != "labels":
        bad.unlink()
        if fault == "directory":
            bad.mkdir()
            expected = f"{bad}: a directory"
        else:
            bad.with_name(f"{name}.gz").write_bytes(b"not gzip")
            expected = f"{bad}.gz: could not be decompressed"
    code, _, err = cl_run_here(["hardware=cpu", "hardware.num_threads=1", "benchmark.num_tasks=2",
                                "benchmark.train_samples_per_task=100", "progress=false",
                                f"data.root={tmp_path / 'data'}", "data.download=false",
                                f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {expected}") and "Traceback" not in err


# ---------------------------------------------------------------- failed downloads

def test_failed_mnist_download_gives_its_cause_and_leaves_no_folders(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", [DEAD_URL])
    root = tmp_path / "typo" / "data"
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(root, download=True)
    msg = str(info.value)
    assert "\n" not in msg and "CL_RUNNER_DATA" in msg
    assert "download failed: Error downloading train-images-idx3-ubyte.gz:" in msg
    assert "Connection refused" in msg and "(1 mirror tried)" in msg
    assert not (tmp_path / "typo").exists()
    assert tmp_path.exists()  # folders that were there before stay


def test_failed_mnist_download_keeps_folders_that_were_there(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", [DEAD_URL])
    (tmp_path / "MNIST").mkdir()
    with pytest.raises(DatasetNotFoundError):
        load_mnist(tmp_path, download=True)
    assert (tmp_path / "MNIST").is_dir() and not (tmp_path / "MNIST" / "raw").exists()


def test_failed_cifar_download_gives_its_cause_and_leaves_no_folders(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR100

    monkeypatch.setattr(CIFAR100, "url", DEAD_URL + CIFAR100.filename)
    root = tmp_path / "typo"
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar100(root, download=True)
    msg = str(info.value)
    assert "\n" not in msg and "download failed:" in msg and "Connection refused" in msg
    assert not root.exists()


# ---------------------------------------------------------------- CIFAR-100 files

@pytest.fixture
def cifar_root(tmp_path):
    write_cifar100_archive(tmp_path, train_per_class=2, test_per_class=1, seed=0)
    return tmp_path


@pytest.mark.parametrize("verify", [False, True])
def test_truncated_cifar_pickle_names_file_and_cause(cifar_root, verify):
    bad = cifar_root / "cifar-100-python" / "train"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetCorruptError) as info:
        load_cifar100(cifar_root, download=False, verify_checksums=verify)
    msg = str(info.value)
    assert msg.startswith(f"{bad}: {len(data) // 2:,} bytes, not a readable pickle")
    assert "truncated" in msg and "\n" not in msg


def test_cifar_pickle_of_the_wrong_content(cifar_root):
    import pickle

    bad = cifar_root / "cifar-100-python" / "meta"
    bad.write_bytes(pickle.dumps({"fine_label_names": ["a", "b"]}))
    with pytest.raises(DatasetCorruptError, match=r"meta: 2 fine label names, expected 100"):
        load_cifar100(cifar_root, download=False, verify_checksums=False)
    bad.write_bytes(pickle.dumps({"names": []}))  # torchvision's KeyError, diagnosed
    with pytest.raises(DatasetCorruptError, match=r"meta: no list of 100 'fine_label_names'"):
        load_cifar100(cifar_root, download=False, verify_checksums=False)


def test_unofficial_cifar_files_name_each_checksum(cifar_root):
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar100(cifar_root, download=False, verify_checksums=True)
    msg = str(info.value)
    assert not isinstance(info.value, DatasetCorruptError)
    assert "train: " in msg and "not the official file's 16019d7e3df5f24257cddd939b257f8d" in msg
    assert "benchmark.verify_checksums=false" in msg


# ---------------------------------------------------------------- checks before any data

@pytest.mark.parametrize(("overrides", "expected"), [
    (["benchmark.train_samples_per_task=100000"], "exceeds the 60,000 MNIST training images"),
    (["benchmark=permuted_mnist", "benchmark.train_samples_per_task=60001"], "60,000"),
    (["benchmark=split_cifar100", "benchmark.train_samples_per_task=2501"],
     r"exceeds the 2,500 training images of a task \(5 classes x 500"),
    (["benchmark=split_cifar100", "benchmark.classes_per_task=2",
      "benchmark.train_samples_per_task=1001"], "1,000"),
    (["benchmark.angles=[0,90]", "benchmark.num_tasks=3"], "benchmark.angles has 2 entries"),
    (["benchmark.batch_size=0"], "benchmark.batch_size must be >= 1, got 0"),
    (["benchmark.max_steps_per_task=0"], "benchmark.max_steps_per_task must be >= 1 or null"),
    (["optimizer.momentum=1.0"], r"optimizer.momentum must be in \[0, 1\), got 1.0"),
])
def test_value_checks_run_before_any_file_is_read(tmp_path, overrides, expected):
    root = tmp_path / "no_such_root"  # reading any data would raise DatasetNotFoundError
    with pytest.raises(ConfigError, match=expected):
        compose_run([*overrides, f"data.root={root}"])
    assert not root.exists()


def test_largest_subset_still_accepted(tmp_path):
    run = compose_run(["benchmark.train_samples_per_task=60000", f"data.root={tmp_path}"])
    assert run.benchmark.train_samples_per_task == 60_000


def test_cl_run_prints_one_line_for_a_corrupt_file(mnist_root, tmp_path, cl_run_here):
    name = "train-images-idx3-ubyte"
    bad = mnist_copy(mnist_root, tmp_path / "data", name, real_bytes(mnist_root, name)[:1000])
    code, _, err = cl_run_here(["hardware=cpu", "hardware.num_threads=1", "benchmark.num_tasks=2",
                                "benchmark.train_samples_per_task=100", "progress=false",
                                f"data.root={tmp_path / 'data'}",
                                f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and str(bad) in lines[0]
    assert "1,000 bytes, expected 47,040,016" in lines[0] and "Traceback" not in err


# ---------------------------------------------------------------- helpers

def test_exception_line_joins_torchvision_mirror_errors():
    exc = RuntimeError("Error downloading f.gz:\nTried http://a/, got:\n<urlopen error x>\n"
                       "Tried http://b/, got:\n<urlopen error y>\n")
    assert exception_line(exc) == "Error downloading f.gz: <urlopen error x>; <urlopen error y> " \
                                  "(2 mirrors tried)"
    assert exception_line(AssertionError()) == "AssertionError"
    assert exception_line(ValueError("a\n  b")) == "a b"


def test_check_value_messages_and_bounds():
    class Cfg:
        a, b, c = 1, 0, None

    check_at_least_one("x", Cfg, "a")
    check_at_least_one("x", Cfg, "c", nullable=True)
    with pytest.raises(ConfigError, match=r"^x.b must be >= 1, got 0$"):
        check_at_least_one("x", Cfg, "a", "b")
    with pytest.raises(ConfigError, match=r"^x.c must be >= 1, got None$"):
        check_at_least_one("x", Cfg, "c")
    with pytest.raises(ConfigError, match=r"^k must be >= 1 or null, got 0$"):
        check_value("k", 0, ge=1, nullable=True)
    check_value("k", 1.0, gt=0, le=1)
    with pytest.raises(ConfigError, match=r"^k must be in \(0, 1\], got 0$"):
        check_value("k", 0, gt=0, le=1)
    assert issubclass(DatasetCorruptError, CLRunnerError)
