"""Saliency maps drawn over the image they explain: NumPy in, RGB uint8 out.

A saliency map (`saliency.npz`, 32x32 uint8, 0 = no attribution, 255 = most) is
shown over its test image: each pixel is blended towards a colour of the Inferno
scale in proportion to its saliency, so the parts the model ignored keep their own
colours and the parts it used glow. A plain colour map over the whole image would
hide exactly what a reviewer wants to compare: the object and its background.

No Streamlit and no plotting library: the app enlarges and encodes the result with
`cifar_mtl.images`.
"""

from __future__ import annotations

import numpy as np

# Stops of matplotlib's Inferno scale (as in plotly.colors.sequential.Inferno), dark to bright:
# perceptually even, and readable by the common colour-blindnesses.
INFERNO = (
    "#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60",
    "#cf4446", "#ed6925", "#fb9b06", "#f7d13d", "#fcffa4",
)
DEFAULT_ALPHA = 0.7  # the blend weight at the most salient pixel


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[k : k + 2], 16) for k in (1, 3, 5))


def colour_table(stops=INFERNO) -> np.ndarray:
    """(256, 3) uint8: the colour of each saliency value 0..255, linear between `stops`."""
    anchors = np.array([_rgb(s) for s in stops], dtype=np.float64)
    at = np.linspace(0, 255, len(stops))
    levels = np.arange(256)
    table = np.stack([np.interp(levels, at, anchors[:, c]) for c in range(3)], axis=1)
    return np.round(table).astype(np.uint8)


_TABLE = colour_table()


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """`image` with `saliency` blended over it.

    Args:
        image: (H, W, 3) uint8 RGB.
        saliency: (H, W) uint8, 0..255 (0 leaves a pixel as it is).
        alpha: blend weight at saliency 255, in 0..1; a pixel of saliency s gets
            `alpha * s / 255` of its Inferno colour.

    Returns:
        (H, W, 3) uint8.
    """
    image, saliency = np.asarray(image), np.asarray(saliency)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (height, width, 3) uint8, got {image.dtype} of shape {image.shape}")
    if saliency.shape != image.shape[:2] or saliency.dtype != np.uint8:
        raise ValueError(f"saliency must be {image.shape[:2]} uint8 like its image, got {saliency.dtype} "
                         f"of shape {saliency.shape}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in 0..1, got {alpha}")
    weight = (alpha * saliency.astype(np.float32) / 255.0)[..., None]
    blended = image.astype(np.float32) * (1 - weight) + _TABLE[saliency].astype(np.float32) * weight
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
