"""Tests for jaxmlp.data: the IDX reader, the lookup order, downloads, tfds, digits, preprocessing.

Facts checked against come from ../shared/data/README.md and SHA256SUMS. Download tests use a
real HTTP server on 127.0.0.1 (tests/_http.py); no test reaches the internet.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from _http import closed_port_url, serve_directory

from jaxmlp import data
from jaxmlp.config import Config
from jaxmlp.data import DataError, Dataset, DatasetNotFound, load_dataset, read_idx
from jaxmlp.data.__main__ import main as data_main
from jaxmlp.data.specs import _SPECS, IDX_FILES

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = IDX_FILES
MNIST_TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
# The README gives these rounded to 4 decimals, so a correct loader is within 0.5e-4 of them.
MNIST_PIXEL_STATS = {"train": (0.1307, 0.3081), "test": (0.1325, 0.3105)}
STATS_TOLERANCE = 1e-4
VERIFIED = "the published files, SHA-256 verified"  # the loader's words for a content match


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test sees only the data it sets up: an empty cache, no data dir, no system or tfds
    copy, and mirrors that refuse connections, so no test can touch the user's files or the
    internet by accident."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("JAXMLP_DATA_DIR", raising=False)
    monkeypatch.setenv("JAXMLP_MIRRORS", closed_port_url())
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no-tfds"))
    monkeypatch.setattr(data.lookup, "SYSTEM_DATA_DIR", tmp_path / "no-system-datasets")


# ----------------------------------------------------------------------------------------------
# Helpers and shared data
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist(mnist_dir: Path) -> Dataset:
    return load_dataset("mnist", data_dir=mnist_dir, source="local", progress=False)


@pytest.fixture(scope="module")
def fashion(fashion_dir: Path) -> Dataset:
    return load_dataset("fashion_mnist", data_dir=fashion_dir, source="local", progress=False)


@pytest.fixture(scope="module")
def raw_train_labels(mnist_dir: Path) -> bytes:
    """The uncompressed MNIST train-labels file: small, so the basis of most corruptions."""
    return gzip.decompress((mnist_dir / f"{TRAIN_LABELS}.gz").read_bytes())


def copy_dataset(source: Path, folder: Path, replace: dict[str, bytes] | None = None) -> Path:
    """A copy of the four .gz files in `folder`; `replace` maps a stem to new raw content."""
    replace = replace or {}
    folder.mkdir(parents=True)
    for stem in IDX_FILES:
        target = folder / f"{stem}.gz"
        if stem in replace:
            target.write_bytes(gzip.compress(replace[stem], compresslevel=1))
        else:
            shutil.copyfile(source / f"{stem}.gz", target)
    return folder


def labels_idx(labels: np.ndarray) -> bytes:
    """A valid IDX label file holding `labels`."""
    return b"\x00\x00\x08\x01" + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes()


def pixel_mean_std(images: np.ndarray) -> tuple[float, float]:
    pixels = images.astype(np.float32) / 255.0
    return float(pixels.mean(dtype=np.float64)), float(pixels.std())


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


# ----------------------------------------------------------------------------------------------
# The IDX reader on the real files
# ----------------------------------------------------------------------------------------------


def test_mnist_counts_shapes_and_dtypes(mnist: Dataset) -> None:
    assert mnist.x_train.shape == (60000, 28, 28)
    assert mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_train.shape == (60000,)
    assert mnist.y_test.shape == (10000,)
    assert mnist.x_train.dtype == np.uint8
    assert mnist.y_train.dtype == np.int32
    assert mnist.image_shape == (28, 28)
    assert mnist.num_classes == 10


def test_mnist_labels_match_published_facts(mnist: Dataset) -> None:
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(mnist.y_train, minlength=10).tolist() == MNIST_TRAIN_LABEL_COUNTS


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_pixel_mean_and_std(mnist: Dataset, split: str) -> None:
    mean, std = pixel_mean_std(getattr(mnist, f"x_{split}"))
    expected_mean, expected_std = MNIST_PIXEL_STATS[split]
    assert mean == pytest.approx(expected_mean, abs=STATS_TOLERANCE)
    assert std == pytest.approx(expected_std, abs=STATS_TOLERANCE)


def test_decompressed_files_match_sha256sums(shared_data_dir: Path) -> None:
    listed = dict(
        reversed(line.split()) for line in (shared_data_dir / "SHA256SUMS").read_text().splitlines()
    )
    assert len(listed) == 8
    for relative, expected in listed.items():
        folder, stem = relative.split("/")
        content = gzip.decompress((shared_data_dir / folder / f"{stem}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == expected, relative
        # The constants that downloads are verified against must be these same sums.
        name = folder.replace("-", "_")
        assert _SPECS[name].sha256[stem] == expected, relative


def test_fashion_mnist_basics(fashion: Dataset, fashion_dir: Path) -> None:
    assert fashion.x_train.shape == (60000, 28, 28)
    assert fashion.x_test.shape == (10000, 28, 28)
    assert fashion.x_train.dtype == np.uint8
    # Fashion-MNIST is balanced by construction: 6,000 train and 1,000 test images per class.
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10
    assert fashion.source == f"idx files in {fashion_dir}; {VERIFIED}"


def test_read_idx_reads_gzip_and_raw_alike(mnist_dir: Path, tmp_path: Path,
                                           raw_train_labels: bytes) -> None:
    raw = tmp_path / TRAIN_LABELS
    raw.write_bytes(raw_train_labels)
    from_gzip = read_idx(mnist_dir / f"{TRAIN_LABELS}.gz")
    assert from_gzip.shape == (60000,)
    assert from_gzip.dtype == np.uint8
    assert from_gzip[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.array_equal(read_idx(raw), from_gzip)


@pytest.mark.parametrize(
    ("code", "dtype"), [(0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")]
)
def test_read_idx_other_types_in_native_byte_order(tmp_path: Path, code: int, dtype: str) -> None:
    values = np.arange(-3, 3).reshape(2, 3).astype(dtype)
    path = tmp_path / "values.idx"
    path.write_bytes(bytes([0, 0, code, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
                     + values.tobytes())
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype).newbyteorder("=")
    assert result.tolist() == values.tolist()


# ----------------------------------------------------------------------------------------------
# Broken files: every problem is one DataError that names the file
# ----------------------------------------------------------------------------------------------


def _with_count(raw: bytes, count: int) -> bytes:
    return raw[:4] + count.to_bytes(4, "big") + raw[8:]


CORRUPTIONS = {
    # id: (file name, make the bytes from the raw train labels, words the message must contain)
    "truncated": (TRAIN_LABELS, lambda raw: raw[:-1], "truncated"),
    "trailing bytes": (TRAIN_LABELS, lambda raw: raw + b"\x00", "trailing bytes"),
    "truncated header": (TRAIN_LABELS, lambda raw: raw[:6], "truncated header"),
    "too short": (TRAIN_LABELS, lambda raw: raw[:3], "too short"),
    "wrong magic": (TRAIN_LABELS, lambda raw: b"\x01\x02" + raw[2:], "magic"),
    "unknown type code": (TRAIN_LABELS, lambda raw: raw[:2] + b"\x07" + raw[3:], "type code"),
    "header count too big": (TRAIN_LABELS, lambda raw: _with_count(raw, 60001), "truncated"),
    "header count too small": (TRAIN_LABELS, lambda raw: _with_count(raw, 59999), "trailing"),
    "huge sizes in header": (
        TRAIN_LABELS, lambda raw: b"\x00\x00\x08\x03" + b"\xff" * 12 + raw[8:], "truncated"
    ),
    "empty": (TRAIN_LABELS, lambda raw: b"", "empty"),
    "empty .gz": (f"{TRAIN_LABELS}.gz", lambda raw: b"", "empty"),
    "raw bytes named .gz": (f"{TRAIN_LABELS}.gz", lambda raw: raw, "not gzip"),
    "junk named .gz": (f"{TRAIN_LABELS}.gz", lambda raw: b"junk" * 100, "not gzip"),
    "junk after gzip magic": (f"{TRAIN_LABELS}.gz", lambda raw: b"\x1f\x8b" + raw, "corrupt gzip"),
    "gzip cut short": (
        f"{TRAIN_LABELS}.gz", lambda raw: gzip.compress(raw)[:-100], "corrupt gzip"
    ),
    "gzip bad checksum": (
        f"{TRAIN_LABELS}.gz", lambda raw: gzip.compress(raw)[:-8] + bytes(8), "corrupt gzip"
    ),
    "truncated inside gzip": (
        f"{TRAIN_LABELS}.gz", lambda raw: gzip.compress(raw[:-10]), "truncated"
    ),
}


@pytest.mark.parametrize("case", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_read_idx_rejects_broken_files(tmp_path: Path, raw_train_labels: bytes, case) -> None:
    filename, corrupt, words = case
    path = tmp_path / filename
    path.write_bytes(corrupt(raw_train_labels))
    with pytest.raises(DataError) as error:
        read_idx(path)
    assert str(path) in str(error.value)
    assert words in str(error.value)


def test_read_idx_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nothing-here")


def test_load_rejects_image_and_label_counts_that_differ(
    mnist_dir: Path, tmp_path: Path, mnist: Dataset
) -> None:
    folder = copy_dataset(mnist_dir, tmp_path / "m", {TRAIN_LABELS: labels_idx(mnist.y_train[:-1])})
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_dir=folder, progress=False)
    message = str(error.value)
    assert "60000 images" in message and "59999 labels" in message
    assert str(folder / f"{TRAIN_LABELS}.gz") in message


def test_load_rejects_labels_out_of_range(mnist_dir: Path, tmp_path: Path, mnist: Dataset) -> None:
    labels = mnist.y_test.copy()
    labels[123] = 10
    folder = copy_dataset(mnist_dir, tmp_path / "m", {TEST_LABELS: labels_idx(labels)})
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_dir=folder, progress=False)
    assert str(folder / f"{TEST_LABELS}.gz") in str(error.value)
    assert "outside 0..9" in str(error.value) and "index 123" in str(error.value)


def test_load_rejects_images_that_are_not_3d(
    mnist_dir: Path, tmp_path: Path, raw_train_labels: bytes
) -> None:
    folder = copy_dataset(mnist_dir, tmp_path / "m", {TRAIN_IMAGES: raw_train_labels})
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_dir=folder, progress=False)
    assert str(folder / f"{TRAIN_IMAGES}.gz") in str(error.value)


def test_broken_files_stop_the_search_rather_than_being_skipped(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A good copy in the cache must not hide a damaged file the user pointed at."""
    copy_dataset(mnist_dir, tmp_path / "xdg-cache" / "jaxmlp" / "mnist")
    folder = copy_dataset(mnist_dir, tmp_path / "m")
    (folder / f"{TEST_IMAGES}.gz").write_bytes(b"junk")
    monkeypatch.setenv("JAXMLP_DATA_DIR", str(folder))
    with pytest.raises(DataError, match="not gzip"):
        load_dataset("mnist", progress=False)


# ----------------------------------------------------------------------------------------------
# Where load_dataset looks, and what it says it used
# ----------------------------------------------------------------------------------------------


def test_data_dir_beats_env_beats_cache(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argument = copy_dataset(mnist_dir, tmp_path / "argument")
    env = copy_dataset(mnist_dir, tmp_path / "env")
    cached = copy_dataset(mnist_dir, tmp_path / "xdg-cache" / "jaxmlp" / "mnist")
    assert data.cache_dir() == tmp_path / "xdg-cache" / "jaxmlp"
    monkeypatch.setenv("JAXMLP_DATA_DIR", str(env))

    used = load_dataset("mnist", data_dir=argument, source="local", progress=False)
    assert used.source == f"idx files in {argument}; {VERIFIED}"
    from_env = load_dataset("mnist", source="local", progress=False)
    assert from_env.source == f"idx files in {env}; {VERIFIED}"
    monkeypatch.delenv("JAXMLP_DATA_DIR")
    from_cache = load_dataset("mnist", source="local", progress=False)
    assert from_cache.source == f"idx files in {cached}; {VERIFIED}"
    assert from_cache.verified is True


def test_a_named_folder_is_the_only_place_looked(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A good copy waits in the user cache: a named folder that fails must not fall back to it.
    copy_dataset(mnist_dir, tmp_path / "xdg-cache" / "jaxmlp" / "mnist")
    monkeypatch.delenv("JAXMLP_DATA_DIR", raising=False)
    half = copy_dataset(mnist_dir, tmp_path / "half")
    (half / "t10k-labels-idx1-ubyte.gz").unlink()
    cases = {
        tmp_path / "no-such-folder": "no such folder",
        half: "lacks t10k-labels-idx1-ubyte",
        tmp_path: "no IDX files in it",
    }
    for folder, reason in cases.items():
        for source in ("auto", "local"):
            with pytest.raises(DataError) as error:
                load_dataset("mnist", data_dir=folder, source=source, progress=False)
            assert not isinstance(error.value, DatasetNotFound)  # not "try elsewhere"
            message = str(error.value)
            assert message.startswith(f"--data-dir {folder}: ") and reason in message
            assert "\n" not in message
    monkeypatch.setenv("JAXMLP_DATA_DIR", str(half))
    with pytest.raises(DataError, match=f"^JAXMLP_DATA_DIR={half}: .*lacks t10k-labels"):
        load_dataset("mnist", progress=False)


def test_a_named_folder_that_fails_is_an_error_also_without_a_dataset(tmp_path: Path) -> None:
    # With no --dataset the run would otherwise quietly train on the 8x8 digits.
    config = Config(data_dir=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="no such folder"):
        data.load_data(config, progress=False)


def test_the_other_known_data_set_is_refused(
    mnist_dir: Path, fashion_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match=r"holds fashion_mnist, not mnist \(all four files"):
        load_dataset("mnist", data_dir=fashion_dir, progress=False)
    with pytest.raises(DataError, match=r"holds mnist, not fashion_mnist"):
        load_dataset("fashion_mnist", data_dir=mnist_dir, progress=False)
    # One file of the other set among the right ones is refused too, and named.
    mixed = copy_dataset(mnist_dir, tmp_path / "mixed")
    shutil.copyfile(fashion_dir / "t10k-labels-idx1-ubyte.gz", mixed / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match=r"fashion_mnist, not mnist \(t10k-labels-idx1-ubyte:"):
        load_dataset("mnist", data_dir=mixed, progress=False)


def test_unknown_content_is_accepted_as_unverified(
    mnist_dir: Path, tmp_path: Path, raw_train_labels: bytes
) -> None:
    altered = bytearray(raw_train_labels)
    altered[8] = (altered[8] + 1) % 10  # a well-formed file that is not the published one
    folder = copy_dataset(mnist_dir, tmp_path / "own", {TRAIN_LABELS: bytes(altered)})
    own = load_dataset("mnist", data_dir=folder, progress=False)
    assert own.verified is False
    assert own.source == (f"idx files in {folder}; unverified: not the published mnist files, "
                          "used as your own IDX data")
    assert own.y_train[0] == (raw_train_labels[8] + 1) % 10


def test_parent_folder_with_subfolders(shared_data_dir: Path) -> None:
    mnist = load_dataset("mnist", data_dir=shared_data_dir, progress=False)
    assert mnist.source == f"idx files in {shared_data_dir / 'mnist'}; {VERIFIED}"
    fashion = load_dataset("fashion_mnist", data_dir=shared_data_dir, progress=False)
    assert fashion.source == f"idx files in {shared_data_dir / 'fashion-mnist'}; {VERIFIED}"
    assert not np.array_equal(mnist.y_train, fashion.y_train)


def test_fashion_mnist_underscore_folder_and_system_dir(
    fashion_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "usr-share-datasets"
    system.mkdir()
    (system / "fashion_mnist").symlink_to(fashion_dir, target_is_directory=True)
    monkeypatch.setattr(data.lookup, "SYSTEM_DATA_DIR", system)
    found = load_dataset("fashion_mnist", source="local", progress=False)
    assert found.source == f"idx files in {system / 'fashion_mnist'}; {VERIFIED}"
    assert found.x_train.shape == (60000, 28, 28)


def test_uncompressed_files_load_the_same(mnist_dir: Path, tmp_path: Path, mnist: Dataset) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    for stem in IDX_FILES:
        (folder / stem).write_bytes(gzip.decompress((mnist_dir / f"{stem}.gz").read_bytes()))
    loaded = load_dataset("mnist", data_dir=folder, progress=False)
    assert np.array_equal(loaded.x_train, mnist.x_train)
    assert np.array_equal(loaded.y_test, mnist.y_test)


def test_local_search_lists_every_place_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAXMLP_DATA_DIR", raising=False)
    with pytest.raises(DatasetNotFound) as error:
        load_dataset("mnist", source="local", progress=False)
    tried = error.value.tried
    assert [entry.split(" ", 1)[0] for entry in tried] == ["JAXMLP_DATA_DIR", "user", "system"]
    assert tried[0].endswith(": not set")
    assert "no such folder" in tried[1]
    message = str(error.value)
    assert all(entry in message for entry in tried)
    assert "JAXMLP_DATA_DIR" in message and "tensorflow-datasets" in message
    # Installing tensorflow-datasets is advised only where it is not installed.
    missing = importlib.util.find_spec("tensorflow_datasets") is None
    assert ("pip install 'jaxmlp[tfds]'" in message) == missing


def test_unknown_names_are_value_errors() -> None:
    with pytest.raises(ValueError, match="mnist, fashion_mnist, digits"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="auto, local, tfds, download"):
        load_dataset("mnist", source="internet")


def test_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert data.cache_dir() == tmp_path / "xdg-cache" / "jaxmlp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "jaxmlp"


# ----------------------------------------------------------------------------------------------
# Downloads from a real HTTP server on 127.0.0.1
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def good_mirror(mnist_dir: Path, tmp_path: Path):
    with serve_directory(copy_dataset(mnist_dir, tmp_path / "good-mirror")) as url:
        yield url


@pytest.fixture
def bad_mirror(mnist_dir: Path, tmp_path: Path, raw_train_labels: bytes):
    """Serves MNIST with one train label changed: well-formed, but not the published content."""
    altered = bytearray(raw_train_labels)
    altered[8] = (altered[8] + 1) % 10
    folder = copy_dataset(mnist_dir, tmp_path / "bad-mirror", {TRAIN_LABELS: bytes(altered)})
    with serve_directory(folder) as url:
        yield url


def test_download_verifies_and_fills_the_cache(good_mirror: str, mnist: Dataset) -> None:
    loaded = load_dataset("mnist", source="download", mirrors=[good_mirror], progress=False)
    folder = data.cache_dir() / "mnist"
    assert loaded.source == f"downloaded from {good_mirror} into {folder}; {VERIFIED}"
    assert sorted(path.name for path in files_under(data.cache_dir())) == sorted(
        f"{stem}.gz" for stem in IDX_FILES
    )
    assert np.array_equal(loaded.y_train, mnist.y_train)
    assert np.array_equal(loaded.x_test, mnist.x_test)

    # A valid cached copy is reused without the network (the mirror now refuses connections).
    again = load_dataset("mnist", source="download", mirrors=[closed_port_url()], progress=False)
    assert again.source == f"cached download in {folder}; {VERIFIED}"


def test_download_rejects_wrong_content_and_leaves_nothing(bad_mirror: str) -> None:
    with pytest.raises(DatasetNotFound) as error:
        load_dataset("mnist", source="download", mirrors=[bad_mirror], progress=False)
    message = str(error.value)
    assert f"{bad_mirror}{TRAIN_LABELS}.gz: SHA-256 checksum mismatch" in message
    assert files_under(data.cache_dir()) == []
    assert not (data.cache_dir() / "mnist").exists()


def test_download_falls_back_to_the_next_mirror(bad_mirror: str, good_mirror: str) -> None:
    loaded = load_dataset("mnist", source="download", mirrors=[bad_mirror, good_mirror],
                          progress=False)
    assert f"downloaded from {bad_mirror}, {good_mirror}" in loaded.source  # images came first
    assert np.bincount(loaded.y_train).tolist() == MNIST_TRAIN_LABEL_COUNTS


def test_interrupted_download_leaves_nothing(mnist_dir: Path, tmp_path: Path) -> None:
    folder = copy_dataset(mnist_dir, tmp_path / "mirror")
    with serve_directory(folder, cut_after=1000) as url, pytest.raises(DatasetNotFound) as error:
        load_dataset("mnist", source="download", mirrors=[url], progress=False)
    assert f"{url}{TRAIN_IMAGES}.gz" in str(error.value)
    assert files_under(data.cache_dir()) == []


def test_ctrl_c_during_download_leaves_nothing(
    good_mirror: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(raw: bytes, sha256: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(data.download, "_verify_gzip_content", interrupt)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("mnist", source="download", mirrors=[good_mirror], progress=False)
    assert files_under(data.cache_dir()) == []


def test_download_from_a_server_that_is_down() -> None:
    url = closed_port_url()
    with pytest.raises(DatasetNotFound) as error:
        load_dataset("fashion_mnist", source="download", mirrors=[url], progress=False)
    # One entry: the first file failed on every mirror, so the others were not tried.
    assert len(error.value.tried) == 1
    assert error.value.tried[0].startswith(f"{url}{TRAIN_IMAGES}.gz: cannot connect (")
    assert f"{url}{TRAIN_IMAGES}.gz" in str(error.value)
    assert "connect to the network" in str(error.value)
    assert files_under(data.cache_dir()) == []


def test_auto_falls_through_to_download_via_env_mirrors(
    good_mirror: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAXMLP_DATA_DIR", raising=False)  # a named folder would be the only place
    monkeypatch.setenv("JAXMLP_MIRRORS", f" {good_mirror} ,")
    loaded = load_dataset("mnist", progress=False)
    assert loaded.source.startswith(f"downloaded from {good_mirror} into ")


def test_auto_lists_every_place_when_all_fail(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound) as error:
        load_dataset("mnist", progress=False)
    kinds = [entry.split(" ", 1)[0].split(":", 1)[0] for entry in error.value.tried]
    assert kinds == ["JAXMLP_DATA_DIR", "user", "system", "tensorflow-datasets", "http"]
    assert f"data_dir {tmp_path / 'no-tfds'}: no prepared mnist" in error.value.tried[3]


# ----------------------------------------------------------------------------------------------
# tensorflow-datasets
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tfds_cache(tfds_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XDG cache home shared by the tfds tests, so the slow decode happens once."""
    return tmp_path_factory.mktemp("tfds-xdg-cache")


@pytest.fixture(scope="module")
def tfds_mnist(tfds_dir: Path, tfds_cache: Path) -> Dataset:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tfds_cache))
        patch.setenv("TFDS_DATA_DIR", str(tfds_dir))
        return load_dataset("mnist", source="tfds", progress=False)


def test_tfds_mnist_matches_the_idx_files(tfds_mnist: Dataset, tfds_dir: Path,
                                          mnist: Dataset) -> None:
    assert tfds_mnist.x_train.shape == (60000, 28, 28)
    assert tfds_mnist.x_test.shape == (10000, 28, 28)
    assert tfds_mnist.x_train.dtype == np.uint8
    assert tfds_mnist.y_train.dtype == np.int32
    assert tfds_mnist.source.startswith(f"tfds data_dir {tfds_dir} (mnist ")
    # Same examples in another order: equal label counts and equal pixel statistics.
    assert np.bincount(tfds_mnist.y_train).tolist() == MNIST_TRAIN_LABEL_COUNTS
    assert np.array_equal(np.bincount(tfds_mnist.y_test), np.bincount(mnist.y_test))
    assert not np.array_equal(tfds_mnist.y_train, mnist.y_train)
    for split in ("train", "test"):
        mean, std = pixel_mean_std(getattr(tfds_mnist, f"x_{split}"))
        assert mean == pytest.approx(MNIST_PIXEL_STATS[split][0], abs=STATS_TOLERANCE)
        assert std == pytest.approx(MNIST_PIXEL_STATS[split][1], abs=STATS_TOLERANCE)


@pytest.mark.parametrize("split", ["train", "test"])
def test_tfds_holds_the_same_examples_as_the_idx_files(
    tfds_mnist: Dataset, mnist: Dataset, split: str
) -> None:
    """The same (image, label) pairs, as multisets: catches flipped or transposed images."""

    def pairs(dataset: Dataset) -> Counter[tuple[bytes, int]]:
        images, labels = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        return Counter(zip((image.tobytes() for image in images), labels.tolist(), strict=True))

    assert pairs(tfds_mnist) == pairs(mnist)


def test_tfds_second_load_uses_the_decoded_cache(
    tfds_mnist: Dataset, tfds_dir: Path, tfds_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tfds_cache))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(data.tfds, "_decode_tfds_split", no_decoding)
    start = time.perf_counter()
    again = load_dataset("mnist", source="tfds", progress=False)
    elapsed = time.perf_counter() - start
    # Decoding takes seconds; reading the cache ~0.1 s. 2 s leaves room for a slow CI disk.
    assert elapsed < 2.0
    assert ", decoded copy " in again.source
    assert np.array_equal(again.x_train, tfds_mnist.x_train)
    assert np.array_equal(again.y_test, tfds_mnist.y_test)


def test_auto_uses_tfds_before_downloading(
    tfds_mnist: Dataset, tfds_dir: Path, tfds_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tfds_cache))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    assert load_dataset("mnist", progress=False).source.startswith("tfds data_dir ")


def test_tfds_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(DatasetNotFound) as error:
        load_dataset("mnist", source="tfds", progress=False)
    assert "pip install 'jaxmlp[tfds]'" in error.value.tried[0]
    assert "source='tfds'" in str(error.value)
    assert "or pip install 'jaxmlp[tfds]' and prepare it" in str(error.value)


# ----------------------------------------------------------------------------------------------
# scikit-learn's digits
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def test_digits_shapes_values_and_split(digits: Dataset) -> None:
    from sklearn.datasets import load_digits

    assert digits.x_train.shape == (1437, 8, 8)
    assert digits.x_test.shape == (360, 8, 8)
    assert digits.x_train.dtype == np.uint8
    assert digits.y_train.dtype == np.int32
    assert digits.image_shape == (8, 8)
    pixels = np.concatenate([digits.x_train.ravel(), digits.x_test.ravel()])
    assert pixels.min() == 0 and pixels.max() == 255
    # Every value is one of the 17 levels 0..16, rescaled with rounding.
    assert set(np.unique(pixels)) <= {round(level * 255 / 16) for level in range(17)}
    labels = np.concatenate([digits.y_train, digits.y_test])
    assert np.array_equal(np.bincount(labels), np.bincount(load_digits().target))
    assert "scikit-learn" in digits.source and "default_rng(0)" in digits.source


def test_digits_split_is_deterministic(digits: Dataset) -> None:
    again = load_dataset("digits")
    assert np.array_equal(again.x_train, digits.x_train)
    assert np.array_equal(again.y_test, digits.y_test)


def test_digits_refuses_network_sources() -> None:
    with pytest.raises(DataError, match="ships with scikit-learn"):
        load_dataset("digits", source="download")


# ----------------------------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------------------------


def test_input_affine_unit_and_raw(mnist: Dataset) -> None:
    assert data.input_affine("unit", mnist.x_train) == (1 / 255, 0.0)
    assert data.input_affine("raw", mnist.x_train) == (1.0, 0.0)


def test_input_affine_standardize(mnist: Dataset) -> None:
    scale, shift = data.input_affine("standardize", mnist.x_train)
    mean, std = MNIST_PIXEL_STATS["train"]
    assert shift == pytest.approx(-mean / std, abs=1e-3)
    standardized = mnist.x_train.astype(np.float32) * np.float32(scale) + np.float32(shift)
    assert float(standardized.mean(dtype=np.float64)) == pytest.approx(0.0, abs=1e-4)
    assert float(standardized.std()) == pytest.approx(1.0, abs=1e-4)


def test_input_affine_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unit, raw, standardize"):
        data.input_affine("minmax", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="same value"):
        data.input_affine("standardize", np.full((2, 2, 2), 7, np.uint8))


def test_flatten_is_a_view(mnist: Dataset) -> None:
    flat = data.flatten(mnist.x_test)
    assert flat.shape == (10000, 784)
    assert np.shares_memory(flat, mnist.x_test)
    assert np.array_equal(flat[3], mnist.x_test[3].ravel())


def test_one_hot() -> None:
    encoded = data.one_hot(np.array([0, 2, 9]), 10)
    assert encoded.dtype == np.float32
    assert encoded.shape == (3, 10)
    assert encoded.argmax(axis=1).tolist() == [0, 2, 9]
    assert encoded.sum(axis=1).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"0\.\.9"):
        data.one_hot(np.array([10]), 10)


def test_dataset_repr_is_short(mnist: Dataset) -> None:
    assert repr(mnist) == f"Dataset(name='mnist', source={mnist.source!r}, verified=True)"


# ----------------------------------------------------------------------------------------------
# The committed sample, and `python -m jaxmlp.data fetch`
# ----------------------------------------------------------------------------------------------


def test_the_sample_is_what_its_readme_says(mnist_sample_dir: Path) -> None:
    sums = dict(line.split()[::-1] for line in (mnist_sample_dir / "SHA256SUMS").read_text()
                .splitlines())
    for stem in IDX_FILES:
        content = gzip.decompress((mnist_sample_dir / f"{stem}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == sums[stem], stem
    sample = load_dataset("mnist", data_dir=mnist_sample_dir, progress=False)
    assert (len(sample.y_train), len(sample.y_test)) == (1000, 500)
    assert sample.verified is False  # a part of MNIST is not the published files
    assert sample.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # ../shared/data/README.md's facts
    assert sample.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert len(set(sample.y_train.tolist())) == 10


def test_the_sample_is_the_start_of_mnist(mnist_sample_dir: Path, mnist: Dataset) -> None:
    sample = load_dataset("mnist", data_dir=mnist_sample_dir, progress=False)
    assert np.array_equal(sample.x_train, mnist.x_train[:1000])
    assert np.array_equal(sample.y_train, mnist.y_train[:1000])
    assert np.array_equal(sample.x_test, mnist.x_test[:500])
    assert np.array_equal(sample.y_test, mnist.y_test[:500])


def test_fetch_says_where_the_data_is(mnist_dir: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert data_main(["fetch", "mnist", "--data-dir", str(mnist_dir)]) == 0
    assert capsys.readouterr().out == (f"mnist: 60000 train and 10000 test images, from idx "
                                       f"files in {mnist_dir}; {VERIFIED}\n")
    with pytest.raises(SystemExit) as exit_:
        data_main(["fetch", "mnist", "--data-dir", str(tmp_path / "none")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --data-dir ") and err.count("\n") == 1
