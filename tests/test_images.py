"""Thumbnails: enlargement, PNG round trip, encode-once cache, bad input."""

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from cifar_mtl.images import Thumbnails, encode_png, enlarge
from cifar_mtl.synthetic import fake_images


@pytest.fixture
def images():
    return fake_images(np.arange(12) % 10, seed=3)


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_enlarge_repeats_each_pixel_into_a_block(images):
    big = enlarge(images[0], 4)
    assert big.shape == (128, 128, 3) and big.dtype == np.uint8
    # every 4x4 block is one source pixel
    np.testing.assert_array_equal(big[::4, ::4], images[0])
    np.testing.assert_array_equal(big[3::4, 3::4], images[0])


def test_png_round_trip_is_lossless(images):
    np.testing.assert_array_equal(decode(encode_png(images[5])), images[5])


def test_thumbnail_is_enlarged_png_of_the_right_image(images):
    thumbs = Thumbnails(images)
    data = thumbs.png(7, scale=3)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(decode(data), enlarge(images[7], 3))


def test_each_thumbnail_is_encoded_once(images):
    thumbs = Thumbnails(images)
    first = thumbs.many(range(12))
    again = thumbs.many(range(12))
    assert thumbs.n_encoded == 12
    assert all(a is b for a, b in zip(first, again))  # same bytes object, not re-encoded
    thumbs.png(0, scale=8)  # another size is another thumbnail
    assert thumbs.n_encoded == 13


def test_least_recently_used_thumbnails_are_dropped(images):
    thumbs = Thumbnails(images, max_items=3)
    for i in (0, 1, 2):
        thumbs.png(i)
    thumbs.png(0)  # 0 is now the most recent, 1 the oldest
    thumbs.png(3)
    assert thumbs.n_encoded == 4
    thumbs.png(0)
    assert thumbs.n_encoded == 4
    thumbs.png(1)
    assert thumbs.n_encoded == 5


def test_concurrent_sessions_share_the_cache(images):
    thumbs = Thumbnails(images)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: thumbs.png(i % 12), range(200)))
    assert len(results) == 200
    assert thumbs.n_encoded == 12  # racing sessions wait for the one encoding
    assert len(set(map(id, thumbs.many(range(12))))) == 12


def test_indices_outside_the_loaded_set(images):
    thumbs = Thumbnails(images)
    assert thumbs.many([0, 12, -1])[1:] == [None, None]
    with pytest.raises(IndexError, match="not in the loaded test set"):
        thumbs.png(12)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((4, 32, 32), np.uint8), "expected \\(N, height, width, 3\\)"),
        (np.zeros((4, 32, 32, 3), np.float32), "expected uint8"),
    ],
)
def test_bad_images_are_refused_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        Thumbnails(bad)


def test_bad_scale_is_refused(images):
    with pytest.raises(ValueError, match="scale must be"):
        enlarge(images[0], 0)
