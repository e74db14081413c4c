import os
import pickle

import numpy as np
import pytest

from cifar_mtl import cifar10
from cifar_mtl.cifar10 import DataError, load_cifar10, load_test_set, stratified_split
from cifar_mtl.synthetic import fake_images, write_fake_cifar


def test_folder_source_matches_what_was_written(tmp_path):
    folder = write_fake_cifar(tmp_path, n_train_per_batch=20, n_test=30, seed=3)
    ds = load_cifar10(str(folder))
    assert ds.x_train.shape == (100, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert ds.y_train.shape == (100,) and ds.y_test.shape == (30,)
    # the official row layout is R, G, B planes: reading must give back the images
    np.testing.assert_array_equal(ds.x_test, fake_images(np.arange(30) % 10, seed=3 * 100 + 99))
    assert set(np.unique(ds.y_train)) == set(range(10))


def test_generated_batches_store_pixels_as_python2_strings_like_the_official_files(tmp_path):
    """Python 3's protocol 2 would store the pixels as latin-1 text (`_codecs.encode`), slow to read."""
    folder = write_fake_cifar(tmp_path, n_train_per_batch=20, n_test=30)
    raw = (folder / "data_batch_1").read_bytes()
    assert b"_codecs" not in raw and pickle.BINSTRING in raw
    for encoding in ("bytes", "latin1"):  # keras.datasets reads bytes keys, torchvision str keys
        batch = pickle.loads(raw, encoding=encoding)
        key = b"data" if encoding == "bytes" else "data"
        assert batch[key].shape == (20, 3072) and batch[key].dtype == np.uint8


def test_parent_folder_and_tarball_give_the_same_data(tmp_path):
    tar = write_fake_cifar(tmp_path, tar=True)
    a = load_cifar10(str(tmp_path))  # folder that holds cifar-10-batches-py
    b = load_cifar10(str(tar))
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.x_train, b.x_train)


def test_cifar10_dir_variable_is_the_default_source(tmp_path, monkeypatch):
    folder = write_fake_cifar(tmp_path)
    monkeypatch.setenv("CIFAR10_DIR", str(folder))
    x, y = load_test_set()
    assert x.shape == (20, 32, 32, 3)


def test_no_source_and_no_download_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setattr(cifar10, "KERAS_CACHE", tmp_path / "nothing")
    with pytest.raises(DataError, match="set CIFAR10_DIR"):
        load_test_set(allow_download=False)


def test_missing_file_is_named(tmp_path):
    folder = write_fake_cifar(tmp_path)
    os.remove(folder / "data_batch_3")
    with pytest.raises(DataError, match="data_batch_3: missing"):
        load_cifar10(str(folder))


def test_missing_path_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds neither"):
        load_cifar10(str(tmp_path / "empty"))


def test_truncated_batch_is_named(tmp_path):
    folder = write_fake_cifar(tmp_path)
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="test_batch: cannot be read.*truncated"):
        load_test_set(str(folder))


def test_truncated_tarball_is_named(tmp_path):
    tar = write_fake_cifar(tmp_path, tar=True)
    raw = tar.read_bytes()
    tar.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        load_cifar10(str(tar))


def test_foreign_batch_is_refused(tmp_path):
    folder = write_fake_cifar(tmp_path)
    with open(folder / "test_batch", "wb") as f:  # a CIFAR-100 style batch
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [1, 2]}, f)
    with pytest.raises(DataError, match="CIFAR-100"):
        load_test_set(str(folder))


@pytest.mark.parametrize(
    "batch, message",
    [
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 12]}, "labels range 1..12"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "1 labels for 2 images"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, "expected uint8 \\(N, 3072\\)"),
        ([1, 2, 3], "expected a pickled dict"),
    ],
)
def test_bad_batch_contents(tmp_path, batch, message):
    folder = write_fake_cifar(tmp_path)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch, f)
    with pytest.raises(DataError, match=message):
        load_test_set(str(folder))


def test_stratified_split_is_seeded_and_balanced():
    labels = np.repeat(np.arange(10), 100)
    train, val = stratified_split(labels, 0.1, seed=1)
    assert len(val) == 100 and np.all(np.bincount(labels[val]) == 10)
    assert not set(train) & set(val) and len(train) == 900
    again, _ = stratified_split(labels, 0.1, seed=1)
    other, _ = stratified_split(labels, 0.1, seed=2)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)
    sub, val2 = stratified_split(labels, 0.1, seed=1, subset=300)
    assert len(sub) == 300 and np.all(np.bincount(labels[sub]) == 30)
    np.testing.assert_array_equal(val, val2)  # the subset never changes the validation set


@pytest.mark.skipif(not os.environ.get("CIFAR10_DIR"), reason="CIFAR10_DIR is not set (real CIFAR-10 not available)")
def test_real_cifar10():
    ds = load_cifar10()
    assert ds.x_train.shape == (50000, 32, 32, 3) and ds.x_test.shape == (10000, 32, 32, 3)
    assert np.all(np.bincount(ds.y_test) == 1000) and np.all(np.bincount(ds.y_train) == 5000)


def test_keras_download_cache_is_read_without_downloading(tmp_path, monkeypatch):
    """The default source: keras.datasets' cache folder, read by the same checked reader."""
    cache = write_fake_cifar(tmp_path / "keras-datasets", n_train_per_batch=10, n_test=10)
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setattr(cifar10, "KERAS_CACHE", cache)
    ds = load_cifar10(allow_download=False)
    assert ds.source == str(cache) and ds.x_train.shape == (50, 32, 32, 3)


class _RunsCommand:
    """Unpickling this runs a shell command: what a crafted batch file could do."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("where", ["whole file", "inside the dict"])
@pytest.mark.parametrize("tar", [False, True])
def test_a_batch_that_would_run_code_is_refused_before_it_runs(tmp_path, where, tar):
    """Issue 13 #6: the official files are loaded with an unpickler that allows only NumPy arrays."""
    folder = write_fake_cifar(tmp_path)
    marker = tmp_path / "pwned"
    evil = _RunsCommand(f"touch {marker}")
    payload = evil if where == "whole file" else {b"data": evil, b"labels": [0] * 20}
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(payload, f, protocol=2)
    source = folder
    if tar:
        import tarfile
        source = tmp_path / "cifar-10-python.tar.gz"
        with tarfile.open(source, "w:gz") as t:
            t.add(folder, arcname="cifar-10-batches-py")
    with pytest.raises(DataError, match=r"test_batch: refused: it asks to load posix\.system.*download it again"):
        load_test_set(str(source))
    assert not marker.exists()


def test_numpy1_and_protocol5_pickles_still_load(tmp_path):
    """The official files name numpy.core.multiarray (NumPy 1); Python 3 copies may use protocol 5."""
    folder = write_fake_cifar(tmp_path, n_test=20)
    expected = load_test_set(str(folder))
    with open(folder / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")  # Python 2 strings, as in the official files
    raw = pickle.dumps(batch, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"cnumpy.core.multiarray\n_reconstruct" in raw
    (folder / "test_batch").write_bytes(raw)
    np.testing.assert_array_equal(load_test_set(str(folder))[0], expected[0])
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=5))
    np.testing.assert_array_equal(load_test_set(str(folder))[0], expected[0])


def test_a_short_batch_in_an_official_looking_folder_is_refused(tmp_path):
    """Issue 13: a 5-image test_batch loaded as the test set. Without the synthetic
    writer's sizes file, every batch must hold the official 10,000 images."""
    folder = write_fake_cifar(tmp_path, n_test=5)
    assert len(load_test_set(str(folder))[1]) == 5  # the synthetic folder says 5 on purpose
    (folder / cifar10.SIZES_FILE).unlink()
    with pytest.raises(DataError, match="test_batch: holds 5 images; an official CIFAR-10 batch holds 10,000"):
        load_test_set(str(folder))


def test_batches_must_hold_what_the_sizes_file_says(tmp_path):
    folder = write_fake_cifar(tmp_path, n_train_per_batch=20, n_test=20)
    other = write_fake_cifar(tmp_path / "other", n_train_per_batch=20, n_test=5)
    (folder / "test_batch").write_bytes((other / "test_batch").read_bytes())
    with pytest.raises(DataError, match=f"test_batch: holds 5 images; the folder's {cifar10.SIZES_FILE} says 20"):
        load_cifar10(str(folder))


@pytest.mark.parametrize("content", ["{", "[1]", '{"n_train_per_batch": "20", "n_test": 20}', '{"n_test": 20}'])
def test_a_damaged_sizes_file_is_named(tmp_path, content):
    folder = write_fake_cifar(tmp_path)
    (folder / cifar10.SIZES_FILE).write_text(content)
    with pytest.raises(DataError, match=f"{cifar10.SIZES_FILE}: cannot be read"):
        load_test_set(str(folder))
