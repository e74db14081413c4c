"""Shared fixtures: an isolated artifacts home and tiny generated CIFAR-10 files."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty artifacts home, set as CIFAR_MTL_HOME for the test."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("CIFAR_MTL_HOME", str(path))
    return path


@pytest.fixture
def fake_cifar_dir(tmp_path):
    """A `cifar-10-batches-py` folder with 5 x 20 training and 20 test images."""
    from cifar_mtl.synthetic import write_fake_cifar

    return write_fake_cifar(tmp_path / "data", n_train_per_batch=20, n_test=20)
