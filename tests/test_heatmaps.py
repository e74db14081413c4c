"""Saliency overlays: a map blended over its image, pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest

from cifar_mtl.heatmaps import DEFAULT_ALPHA, INFERNO, colour_table, overlay


def test_the_colour_table_runs_from_the_first_to_the_last_stop():
    table = colour_table()
    assert table.shape == (256, 3) and table.dtype == np.uint8
    assert tuple(table[0]) == (0, 0, 4) and tuple(table[255]) == (0xfc, 0xff, 0xa4)
    assert (np.diff(table.astype(int).sum(axis=1)) >= -3).all(), "brightness grows with saliency"
    assert len(INFERNO) == 10


def test_zero_saliency_leaves_the_image_and_full_saliency_blends_alpha_of_the_colour():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    heat = np.zeros((32, 32), np.uint8)
    heat[:8, :8] = 255
    out = overlay(image, heat)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[8:, :] == image[8:, :]).all() and (out[:, 8:] == image[:, 8:]).all()
    expected = np.round(image[:8, :8] * (1 - DEFAULT_ALPHA) + colour_table()[255] * DEFAULT_ALPHA)
    assert np.abs(out[:8, :8].astype(int) - expected).max() <= 1
    # half the saliency moves a pixel about half as far towards its colour
    half = overlay(image, np.full((32, 32), 128, np.uint8), alpha=1.0)
    target = colour_table()[128].astype(float)
    moved = np.abs(half.astype(float) - image) / np.maximum(np.abs(target - image), 1)
    assert np.median(moved[np.abs(target - image) > 40]) == pytest.approx(128 / 255, abs=0.03)


@pytest.mark.parametrize("image, heat, alpha", [
    (np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8), 0.5),  # not RGB
    (np.zeros((32, 32, 3), np.float32), np.zeros((32, 32), np.uint8), 0.5),  # not uint8
    (np.zeros((32, 32, 3), np.uint8), np.zeros((16, 16), np.uint8), 0.5),  # map of another size
    (np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.float32), 0.5),  # map not uint8
    (np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8), 1.5),
])
def test_bad_inputs_are_refused_with_what_was_expected(image, heat, alpha):
    with pytest.raises(ValueError, match="must"):
        overlay(image, heat, alpha)
