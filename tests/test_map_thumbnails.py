"""The Map's hover pictures (`cifar_mtl.app.map_thumbnails`): one PNG per test image in a folder
named by the test set, written once, in the background, and not at all into a folder that
cannot be written."""

from __future__ import annotations

import io
import os
import threading

import numpy as np
import pytest
from PIL import Image

from cifar_mtl.app import map_thumbnails as mt
from cifar_mtl.images import enlarge


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(30, 32, 32, 3), dtype=np.uint8)


def test_each_png_is_its_image_enlarged_twice(images):
    pngs = list(mt.png_files(images))
    assert len(pngs) == len(images)
    for image, data in zip(images, pngs):
        decoded = Image.open(io.BytesIO(data))
        assert decoded.size == (64, 64) and decoded.mode == "RGB"
        assert (np.asarray(decoded) == enlarge(image, 2)).all()


def test_a_test_set_is_named_by_its_pixels(images):
    assert mt.digest(images) == mt.digest(images.copy())
    other = images.copy()
    other[3, 4, 5, 0] ^= 1
    assert mt.digest(other) != mt.digest(images)
    assert mt.digest(images[:29]) != mt.digest(images)
    assert len(mt.digest(images)) == 16


def test_the_pictures_are_written_once_and_served_under_the_url(images, tmp_path):
    hover = mt.prepare(images, tmp_path, "/app/static/")
    folder = tmp_path / mt.FOLDER / mt.digest(images)
    assert hover.problem is None and hover.written == len(images) and not hover.writing
    assert hover.url == f"/app/static/{mt.FOLDER}/{mt.digest(images)}"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}.png" for i in range(len(images)))
    assert hover.urls([0, 29]) == [f"{hover.url}/0.png", f"{hover.url}/29.png"]
    again = mt.prepare(images, tmp_path, "/app/static")
    assert again.url == hover.url and again.written == 0
    assert [p.name for p in (tmp_path / mt.FOLDER).iterdir()] == [folder.name]  # no partial folder left


def test_a_folder_that_cannot_be_written_gives_no_pictures_and_says_why(images, tmp_path):
    blocked = tmp_path / "static"
    blocked.write_text("a file where the static folder should be")  # root ignores read-only modes
    hover = mt.prepare(images, blocked, "/app/static")
    assert hover.url is None and hover.urls([1]) is None and not hover.writing
    assert "could not be written" in hover.problem and "writable" in hover.problem
    background = mt.hover_images(images, blocked, "/app/static", wait=None)
    assert background.url is None and "could not be written" in background.problem


def test_pictures_are_written_in_the_background_and_again_when_removed(images, tmp_path):
    first = mt.hover_images(images, tmp_path, "/app/static")
    assert first.total == len(images) and (first.writing or first.url)
    done = mt.hover_images(images, tmp_path, "/app/static", wait=None)
    assert done.url is not None and done.written == len(images)
    assert mt.hover_images(images, tmp_path, "/app/static").url == done.url  # no wait: it is there
    for picture in mt.set_folder(images, tmp_path).iterdir():
        picture.unlink()
    mt.set_folder(images, tmp_path).rmdir()
    assert mt.hover_images(images, tmp_path, "/app/static", wait=None).written == len(images)


def test_writers_at_once_leave_one_whole_set(images, tmp_path):
    results = []
    threads = [threading.Thread(target=lambda: results.append(mt.prepare(images, tmp_path, "/s"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.url for r in results} == {f"/s/{mt.FOLDER}/{mt.digest(images)}"}
    assert [p.name for p in (tmp_path / mt.FOLDER).iterdir()] == [mt.digest(images)]
    assert len(list(mt.set_folder(images, tmp_path).iterdir())) == len(images)


def test_the_oldest_sets_are_removed_beyond_the_size_kept(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    sets = [rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8) for _ in range(5)]
    one_set = sum(len(p) for p in mt.png_files(sets[0]))
    monkeypatch.setattr(mt, "KEEP_BYTES", int(3.5 * one_set))  # room for three sets
    for k, s in enumerate(sets):
        mt.prepare(s, tmp_path, "/s")
        stamp = 1_000_000 + k
        os.utime(mt.set_folder(s, tmp_path), (stamp, stamp))  # written in this order
    kept = {p.name for p in (tmp_path / mt.FOLDER).iterdir()}
    assert kept == {mt.digest(s) for s in sets[-3:]}
