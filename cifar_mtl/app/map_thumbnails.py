"""The Map's hover pictures: one small PNG file per test image, served by Streamlit as static files.

A Vega-Lite tooltip (vega-tooltip) draws a field named `image` as a picture from its URL, so
every point of the Map needs a URL. Data URLs for 10,000 images would make the chart's data
tens of megabytes; instead each test set is written once, as
`<static>/map-thumbnails/<digest>/<index>.png` (64x64), and Streamlit's static file serving
(`server.enableStaticServing`, on in `.streamlit/config.toml`) serves them under
`app/static/`. The folder is named by a digest of the test images, so another dataset gets
its own, and a folder appears only once all of its files are written (a temporary folder is
renamed into place), so a reader never finds half a set.

No Streamlit here: the page passes the static folder and the URL it is served under.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar_mtl.images import check_images, encode_png, enlarge

FOLDER = "map-thumbnails"
SCALE = 2  # 32 px -> 64 px: big enough to recognise in a tooltip
# Sets kept, newest first, up to this size in all (CIFAR-10's test set takes 35 MB): Streamlit
# stops serving a static folder over 1 GB.
KEEP_BYTES = 400 * 2**20
RETRY_SECONDS = 60  # after a failed writing, before the next try

_lock = threading.Lock()
_digests: dict[int, tuple[weakref.ref, str]] = {}


@dataclass(frozen=True)
class HoverImages:
    """Where the Map's hover pictures are, or why there are none (yet).

    `url` is the URL prefix of the set (a picture is `f"{url}/{index}.png"`), None when there
    are no pictures: `problem` then says why, or, with no problem, they are being written
    (`writing`). `written` counts the files written so far of `total`, and `seconds` the
    time the writing took (0 when the set was already there).
    """

    url: str | None
    problem: str | None = None
    written: int = 0
    total: int = 0
    seconds: float = 0.0

    @property
    def writing(self) -> bool:
        return self.url is None and self.problem is None

    def urls(self, indices) -> list[str] | None:
        """The picture URL of each test index, or None without pictures."""
        if self.url is None:
            return None
        return [f"{self.url}/{int(i)}.png" for i in indices]


def digest(images: np.ndarray) -> str:
    """16 hex digits naming the test set `images` (N, H, W, 3) uint8: a hash of its shape and pixels.

    Hashing 10,000 CIFAR-10 images takes about 0.1 s, so the digest is kept per array object
    (the app holds one array per dataset for the life of the process).
    """
    key = id(images)
    with _lock:
        known = _digests.get(key)
        if known is not None and known[0]() is images:
            return known[1]
    pixels = check_images(images)
    h = hashlib.blake2b(digest_size=8)
    h.update(repr(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).data)
    value = h.hexdigest()
    with _lock:
        _digests[key] = (weakref.ref(images), value)
    return value


def png_files(images: np.ndarray, scale: int = SCALE):
    """PNG bytes of each image of `images` (N, H, W, 3) uint8, enlarged `scale` times by repeating
    pixels, in order (a generator; Pillow encodes, as for every other picture of the app)."""
    for image in check_images(images):
        yield encode_png(enlarge(image, scale))


def set_folder(images: np.ndarray, static_dir: str | Path) -> Path:
    """The folder of this test set's pictures under the static folder (it may not exist yet)."""
    return Path(static_dir) / FOLDER / digest(images)


def is_ready(images: np.ndarray, static_dir: str | Path) -> bool:
    """Whether this test set's pictures are all written (the folder exists only once they are)."""
    return set_folder(images, static_dir).is_dir()


def prepare(images: np.ndarray, static_dir: str | Path, url_root: str, progress=None) -> HoverImages:
    """Write this test set's pictures unless they are there, and say where they are served
    (`hover_images` does it in the background).

    Args:
        images: the test images, (N, 32, 32, 3) uint8, in test-set order.
        static_dir: the app's static folder (`static/` next to `navigation.py` and `app.py`).
        url_root: the URL the static folder is served under, e.g. "/app/static".
        progress: called with the number of files written so far, every few hundred.

    Writes 10,000 files (about 35 MB for CIFAR-10) into a temporary folder and renames it
    into place; with two writers at once the second one's copy is dropped. The oldest sets
    are removed once all take over `KEEP_BYTES`. A folder that cannot be written (read-only,
    full) gives `HoverImages(None, problem)`, and the Map goes on without pictures.
    """
    folder = set_folder(images, static_dir)
    url = _url(url_root, folder)
    if folder.is_dir():
        return HoverImages(url, total=len(images))
    start = time.perf_counter()
    temporary = folder.with_name(f".{folder.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        temporary.mkdir(parents=True, exist_ok=True)
        written = 0
        for index, data in enumerate(png_files(images)):
            (temporary / f"{index}.png").write_bytes(data)
            written += 1
            if progress is not None and written % 250 == 0:
                progress(written)
        try:
            temporary.rename(folder)
        except OSError:
            if not folder.is_dir():
                raise
            written = 0  # another writer finished first: its set is the same pictures
    except OSError as err:
        return HoverImages(None, problem=(
            f"Hover shows no picture: the thumbnails could not be written to `{folder.parent}` "
            f"({err.strerror or err}). Make that folder writable (or free some space); the Map tries "
            "again a minute later."), total=len(images))
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    _prune(folder.parent, keep=folder.name)
    return HoverImages(url, written=written, total=len(images), seconds=time.perf_counter() - start)


def _url(url_root: str, folder: Path) -> str:
    return f"{url_root.rstrip('/')}/{FOLDER}/{folder.name}"


class _Job:
    """`prepare` in a thread of its own, with its progress."""

    def __init__(self, images: np.ndarray, static_dir: str | Path, url_root: str):
        self.total = len(images)
        self.written = 0
        self.result: HoverImages | None = None
        self.finished = 0.0
        self._thread = threading.Thread(target=self._run, args=(images, static_dir, url_root),
                                        name="map-thumbnails", daemon=True)
        self._thread.start()

    def _run(self, images, static_dir, url_root) -> None:
        def progress(n: int) -> None:
            self.written = n

        self.result = prepare(images, static_dir, url_root, progress)
        self.finished = time.monotonic()

    def status(self) -> HoverImages:
        result = self.result
        return result if result is not None else HoverImages(None, written=self.written, total=self.total)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


_jobs: dict[Path, _Job] = {}


def hover_images(images: np.ndarray, static_dir: str | Path, url_root: str, *,
                 wait: float | None = 0) -> HoverImages:
    """This test set's hover pictures, without waiting for them to be written.

    The first call for a test set starts `prepare` in a background thread (one per set and
    process) and returns at once with `writing` set and the count written so far; later
    calls say how far it got, then where the set is served, or the problem. A failure is
    tried again `RETRY_SECONDS` after it. `wait`: seconds to wait for the writing (None: until
    it is done), for scripts and tests.
    """
    folder = set_folder(images, static_dir)
    if folder.is_dir():
        return HoverImages(_url(url_root, folder), total=len(images))
    with _lock:
        job = _jobs.get(folder)
        if job is None or job.result is not None and (
                job.result.url is not None or time.monotonic() - job.finished > RETRY_SECONDS):
            # none yet, or one that finished and its set is gone since (removed by hand or
            # pruned by another process), or a failure old enough to try again
            job = _jobs[folder] = _Job(images, static_dir, url_root)
    if wait != 0:
        job.join(wait)
    return job.status()


def _prune(parent: Path, keep: str) -> None:
    """Remove the oldest sets once all of them take over `KEEP_BYTES` (never `keep`), and
    partial folders over a day old (a writer that died)."""
    try:
        entries = list(os.scandir(parent))
        now = time.time()
        sets = sorted((e for e in entries if e.is_dir() and not e.name.startswith(".") and e.name != keep),
                      key=lambda e: e.stat().st_mtime, reverse=True)
        stale = [e for e in entries if e.name.endswith(".partial") and now - e.stat().st_mtime > 86_400]
        total = _size(parent / keep)
        old = []
        for entry in sets:
            total += _size(Path(entry.path))
            if total > KEEP_BYTES:
                old.append(entry)
    except OSError:
        return
    for entry in old + stale:
        shutil.rmtree(entry.path, ignore_errors=True)


def _size(folder: Path) -> int:
    return sum(e.stat().st_size for e in os.scandir(folder) if e.is_file())
