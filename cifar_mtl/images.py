"""Test images as enlarged PNG thumbnails for the app, encoded once and kept.

A 32x32 CIFAR-10 image is too small to judge on screen, so thumbnails are
enlarged by an integer factor with nearest-neighbour sampling (smoothing would
invent detail that the model never saw). Encoding a PNG costs about a
millisecond; a page shows dozens and reruns on every click, so `Thumbnails`
encodes each (image, scale) pair once and hands back the same bytes afterwards.

No Streamlit and no TensorFlow here: the app wraps a `Thumbnails` in
`st.cache_resource` (see `cifar_mtl.app.loaders`).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

import numpy as np

DEFAULT_SCALE = 4  # 32 px -> 128 px: big enough to see, small enough for a grid
DETAIL_SCALE = 8  # 32 px -> 256 px for the single-image view


def check_images(images: np.ndarray) -> np.ndarray:
    """Return `images` as a uint8 array of shape (N, H, W, 3); raise ValueError otherwise."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images have shape {images.shape}; expected (N, height, width, 3) RGB images"
        )
    if images.dtype != np.uint8:
        raise ValueError(
            f"images have dtype {images.dtype}; expected uint8 pixels 0..255 "
            "(convert with np.clip(x, 0, 255).astype(np.uint8))"
        )
    return images


def enlarge(image: np.ndarray, scale: int = DEFAULT_SCALE) -> np.ndarray:
    """Nearest-neighbour enlargement: (H, W, 3) uint8 -> (H*scale, W*scale, 3) uint8."""
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a whole number >= 1, got {scale}")
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"one image has shape (height, width, 3); got {image.shape}")
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of one (H, W, 3) uint8 image."""
    from PIL import Image  # Pillow is only needed once something is drawn

    buf = io.BytesIO()
    # compress_level 1: the files are a few kB either way, and encoding speed is
    # what a reviewer waits for.
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class Thumbnails:
    """PNG thumbnails of a fixed set of images, made on first request and kept.

    Args:
        images: (N, H, W, 3) uint8, e.g. the CIFAR-10 test set (N = 10,000, 32x32).
        max_items: how many encoded thumbnails to keep; the least recently used go
            first. 5,000 thumbnails at scale 4 take roughly 100-200 MB.

    Thread-safe: one instance is shared by every browser session of the app.
    """

    def __init__(self, images: np.ndarray, max_items: int = 5000):
        self.images = check_images(images)
        self.max_items = int(max_items)
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, int], threading.Event] = {}
        self.n_encoded = 0  # PNG encodings done so far; repeated requests do not add

    def __len__(self) -> int:
        return len(self.images)

    def has(self, index: int) -> bool:
        """Whether `index` names one of the images (predictions may cover more)."""
        return 0 <= int(index) < len(self.images)

    def png(self, index: int, scale: int = DEFAULT_SCALE) -> bytes:
        """PNG bytes of image `index` enlarged `scale` times; encoded once per (index, scale)."""
        index, scale = int(index), int(scale)
        if not self.has(index):
            raise IndexError(
                f"image {index} is not in the loaded test set ({len(self.images)} images); "
                "the run was evaluated on a different or larger dataset than CIFAR10_DIR holds"
            )
        key = (index, scale)
        while True:
            with self._lock:
                data = self._cache.get(key)
                if data is not None:
                    self._cache.move_to_end(key)
                    return data
                pending = self._pending.get(key)
                if pending is None:
                    pending = self._pending[key] = threading.Event()
                    self.n_encoded += 1
                    break
            # Another session is encoding this image right now: wait for it, then read.
            pending.wait()
        # Encode outside the lock so sessions do not wait on each other's images.
        try:
            data = encode_png(enlarge(self.images[index], scale))
            with self._lock:
                self._cache[key] = data
                while len(self._cache) > self.max_items:
                    self._cache.popitem(last=False)
        finally:
            with self._lock:
                del self._pending[key]
            pending.set()
        return data

    def many(self, indices, scale: int = DEFAULT_SCALE) -> list[bytes | None]:
        """PNG bytes for each index, None where the index is not in the loaded set."""
        return [self.png(i, scale) if self.has(i) else None for i in np.asarray(indices).tolist()]
