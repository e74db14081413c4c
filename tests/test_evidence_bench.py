"""The evidence benchmark's own helpers (the timings themselves run in `python -m bench`)."""

import numpy as np

from bench import bench_evidence as be


def test_synthetic_embeddings_are_unit_rows_with_class_structure():
    labels = np.arange(200) % 10
    pred = labels.copy()
    pred[:20] = (labels[:20] + 1) % 10
    x = be.synthetic_embeddings(labels, pred, dim=32, seed=0)
    assert x.shape == (200, 32) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    sim = x @ x.T
    same = labels[:, None] == labels[None, :]
    assert sim[same].mean() > sim[~same].mean() + 0.3
    # An error leans toward its predicted class.
    centre = np.array([x[(labels == k) & (pred == labels)].mean(axis=0) for k in range(10)])
    err = x[:20]
    assert (np.einsum("nd,nd->n", err, centre[pred[:20]]) > np.einsum("nd,nd->n", err, centre[(labels[:20] + 5) % 10])).all()


def test_image_categories_mark_the_top_fifth():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(100, 32, 32, 3), dtype=np.uint8)
    images[:10] //= 8  # dark
    cats = be.image_categories(images)
    assert set(cats) == {"dark", "colourful", "busy"}
    assert all(v.dtype == bool and v.sum() == 20 for v in cats.values())
    assert cats["dark"][:10].all()


def test_evidence_rows_adds_the_model_side_to_the_total(monkeypatch):
    rows = [{"name": "library total (build_evidence)", "value": 30.0, "unit": "s", "target": "-", "ok": None}]
    monkeypatch.setattr(be, "run", lambda quick=False: list(rows))
    extra = [{"name": "embeddings of 60,000 images", "value": 50.0, "unit": "s", "target": "-", "ok": None},
             {"name": "images per second", "value": 1000.0, "unit": "img/s", "target": "-", "ok": None}]
    got = be.evidence_rows(extra)
    assert got[-1]["name"].startswith("evidence total") and got[-1]["value"] == 80.0
    assert len(got) == 4
