"""Training runs without their evidence files, for benchmarks that only need the predictions.

`fit.train` computes a run's evidence (embeddings of 60,000 images, saliency, map,
neighbours) after writing its predictions: minutes on 2 CPU cores that a benchmark
comparing accuracies or training times would only wait for.
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def without_evidence():
    """Within the block, `fit.train` writes no evidence files (and records no evidence metrics)."""
    from cifar_mtl.training import fit

    evidence = fit._evidence
    fit._evidence = lambda *args, **kwargs: {}
    try:
        yield
    finally:
        fit._evidence = evidence
