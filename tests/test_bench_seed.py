"""bench_seed: the seed recipe's throughput rows, on a tiny stand-in config on the CPU."""

import pytest
import json

from bench import bench_seed

pytestmark = pytest.mark.slow  # trains models: left out of the inner loop


def test_rows_for_both_stages_on_a_cpu(tmp_path, monkeypatch):
    config = json.loads(bench_seed.CONFIG.read_text())
    config.update(image_size=32, batch_size=4, frozen_epochs=2, finetune_epochs=3)
    small = tmp_path / "seed_small.json"
    small.write_text(json.dumps(config))
    monkeypatch.setattr(bench_seed, "CONFIG", small)
    rows = bench_seed.run(quick=True)
    assert bench_seed.accelerator() is None
    assert [r["unit"] for r in rows] == ["img/s", "min", "img/s", "min"]
    frozen, frozen_minutes, finetune, finetune_minutes = (r["value"] for r in rows)
    assert frozen > 0 and finetune > 0
    assert "heads on a frozen backbone" in rows[0]["name"] and "CPU, no accelerator" in rows[0]["name"]
    assert "whole network fine-tuned" in rows[2]["name"]
    # minutes follow from the rate: epochs x 45,000 images
    assert abs(frozen_minutes - 2 * 45_000 / frozen / 60) < 1e-6 * frozen_minutes
    assert abs(finetune_minutes - 3 * 45_000 / finetune / 60) < 1e-6 * finetune_minutes
