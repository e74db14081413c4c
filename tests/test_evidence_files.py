"""Evidence files: round trips, atomic writes, and reads that refuse damage with a message."""

import os

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.errors import UserError
from cifar_mtl.evidence import files
from cifar_mtl.evidence.files import (
    DUPLICATES_FILE, EMBEDDINGS_FILE, MAP_FILE, NEIGHBOURS_FILE, SALIENCY_FILE, SLICES_FILE,
    EvidenceError, MissingEvidence, evidence_status, read_duplicates, read_embeddings, read_map,
    read_neighbours, read_saliency, read_slices, write_embeddings, write_saliency, write_table,
)


@pytest.fixture
def run(tmp_path):
    folder = tmp_path / "runs" / "demo-run"
    folder.mkdir(parents=True)
    return folder


def _emb(n, d=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) * 3.0


def _neighbours(n=4, k=3):
    return pd.DataFrame({"index": np.repeat(np.arange(n), k), "rank": np.tile(np.arange(1, k + 1), n),
                         "train_index": np.arange(n * k) * 7, "train_label": np.arange(n * k) % 10,
                         "similarity": np.linspace(0.99, 0.1, n * k)})


def _duplicates():
    return pd.DataFrame({"index": [0, 1, 2], "train_index": [10, 11, 12], "train_label": [3, 4, 5],
                         "label": [3, 5, 5], "similarity": [0.99, 0.98, 0.5],
                         "pixel_similarity": [0.97, 0.95, np.nan],
                         "near_duplicate": [True, True, False], "label_conflict": [False, True, False]})


def test_file_names_are_the_contract():
    assert (EMBEDDINGS_FILE, NEIGHBOURS_FILE, SALIENCY_FILE, MAP_FILE, DUPLICATES_FILE, SLICES_FILE) == (
        "embeddings.npz", "neighbours.parquet", "saliency.npz", "map.parquet", "duplicates.parquet",
        "slices.parquet")
    assert issubclass(EvidenceError, UserError) and issubclass(MissingEvidence, EvidenceError)


def test_embeddings_round_trip_normalised_float16(run):
    test, train = _emb(20), _emb(50, seed=1)
    test[3] = 0.0  # a dead feature vector stays zero instead of becoming NaN
    write_embeddings(run, test, train)
    got = read_embeddings(run)
    assert got.dtype == np.float16 and got.shape == (20, 16)
    norms = np.linalg.norm(got.astype(np.float32), axis=1)
    assert norms[3] == 0 and np.allclose(np.delete(norms, 3), 1, atol=2e-3)
    expected = test[5] / np.linalg.norm(test[5])
    assert np.allclose(got[5], expected, atol=1e-3)
    assert read_embeddings(run, "train").shape == (50, 16)


def test_train_embeddings_absent_says_how_to_get_them(run):
    write_embeddings(run, _emb(5))
    with pytest.raises(MissingEvidence, match="no training-set embeddings.*CIFAR10_DIR"):
        read_embeddings(run, "train")


def test_embeddings_writer_refuses_bad_input(run):
    with pytest.raises(EvidenceError, match="dimensions"):
        write_embeddings(run, _emb(5, 8), _emb(5, 9))
    bad = _emb(5)
    bad[2, 1] = np.nan
    with pytest.raises(EvidenceError, match="NaN"):
        write_embeddings(run, bad)
    with pytest.raises(EvidenceError, match="shape"):
        write_embeddings(run, np.zeros(5))
    assert not (run / EMBEDDINGS_FILE).exists()


def _write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("arrays, message", [
    ({"test": np.ones((4, 3), np.float16)}, "not unit length"),
    ({"test": np.eye(4, dtype=np.float32)}, "float16"),
    ({"test": np.full((2, 2), np.nan, np.float16)}, "NaN"),
    ({"other": np.eye(3, dtype=np.float16)}, "no 'test' array"),
    ({"test": np.eye(3, dtype=np.float16)[0]}, r"\(N, D\)"),
])
def test_damaged_embeddings_are_refused_with_the_fix(run, arrays, message):
    _write_npz(run / EMBEDDINGS_FILE, **arrays)
    with pytest.raises(EvidenceError, match=message) as caught:
        read_embeddings(run)
    assert "python -m cifar_mtl evidence --run demo-run" in str(caught.value)
    assert str(run / EMBEDDINGS_FILE) in str(caught.value)


def test_train_of_another_width_is_refused(run):
    _write_npz(run / EMBEDDINGS_FILE, test=np.eye(3, dtype=np.float16), train=np.eye(4, dtype=np.float16))
    assert read_embeddings(run).shape == (3, 3)
    with pytest.raises(EvidenceError, match="4 dimensions but 'test' has 3"):
        read_embeddings(run, "train")


@pytest.mark.parametrize("content", [b"", b"garbage, not a zip", b"PK\x03\x04" + b"\x00" * 40])
def test_garbage_npz_is_an_evidence_error_not_a_traceback(run, content):
    (run / EMBEDDINGS_FILE).write_bytes(content)
    (run / SALIENCY_FILE).write_bytes(content)
    with pytest.raises(EvidenceError, match="cannot be read"):
        read_embeddings(run)
    with pytest.raises(EvidenceError, match="cannot be read"):
        read_saliency(run)


def test_pickled_npz_is_refused_not_loaded(run):
    np.savez(run / EMBEDDINGS_FILE, test=np.array([{"a": 1}], dtype=object))
    with pytest.raises(EvidenceError, match="cannot be read"):
        read_embeddings(run)


def test_saliency_round_trip_and_checks(run):
    index = np.array([4, 9, 1])
    maps = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32), dtype=np.uint8)
    write_saliency(run, index, maps, maps[::-1])
    got = read_saliency(run)
    assert got["index"].dtype == np.int32 and got["index"].tolist() == [4, 9, 1]
    assert (got["pred_map"] == maps).all() and (got["true_map"] == maps[::-1]).all()
    with pytest.raises(EvidenceError, match="uint8"):
        write_saliency(run, index, maps.astype(np.float32), maps)
    with pytest.raises(EvidenceError, match="repeats"):
        write_saliency(run, [1, 1, 2], maps, maps)
    with pytest.raises(EvidenceError, match="shape"):
        write_saliency(run, index, maps[:, :16, :16], maps[:, :16, :16])
    assert read_saliency(run)["index"].tolist() == [4, 9, 1]  # the refused writes left the file alone


def test_tables_round_trip_with_contract_dtypes(run):
    write_table(run, NEIGHBOURS_FILE, _neighbours())
    write_table(run, MAP_FILE, pd.DataFrame({"index": [0, 1], "x": [0.5, -1.0], "y": [2, 3]}))
    write_table(run, DUPLICATES_FILE, _duplicates())
    write_table(run, SLICES_FILE, pd.DataFrame({"index": [5, 6, 7], "slice": [0, -1, 1], "extra": 1}))
    nb = read_neighbours(run)
    assert list(nb.columns) == ["index", "rank", "train_index", "train_label", "similarity"]
    assert nb.dtypes.astype(str).tolist() == ["int32", "int16", "int32", "int8", "float32"]
    assert read_map(run)["y"].dtype == np.float32
    dup = read_duplicates(run)
    assert dup["label_conflict"].tolist() == [False, True, False] and np.isnan(dup["pixel_similarity"][2])
    assert list(read_slices(run).columns) == ["index", "slice"]  # extra columns are not kept


@pytest.mark.parametrize("name, df, message", [
    (NEIGHBOURS_FILE, _neighbours().drop(columns="similarity"), "lacks column"),
    (NEIGHBOURS_FILE, _neighbours().assign(similarity=1.5), "outside -1..1"),
    (NEIGHBOURS_FILE, _neighbours().assign(rank=1), r"repeats an \(index, rank\)"),
    (NEIGHBOURS_FILE, _neighbours().assign(train_label=10), "labels outside 0..9"),
    (NEIGHBOURS_FILE, _neighbours().assign(rank=0), "below 1"),
    (MAP_FILE, pd.DataFrame({"index": [0, 0], "x": [0.0, 1], "y": [0.0, 1]}), "repeats images"),
    (MAP_FILE, pd.DataFrame({"index": [0, 1], "x": [0.0, np.inf], "y": [0.0, 1]}), "NaN or infinite"),
    (MAP_FILE, pd.DataFrame({"index": [0, 1], "x": ["a", "b"], "y": [0.0, 1]}), "expected numbers"),
    (MAP_FILE, pd.DataFrame({"index": [-1, 1], "x": [0.0, 1], "y": [0.0, 1]}), "negative"),
    (MAP_FILE, pd.DataFrame({"index": [0.5, 1], "x": [0.0, 1], "y": [0.0, 1]}), "whole numbers"),
    (MAP_FILE, pd.DataFrame({"index": [0, None], "x": [0.0, 1], "y": [0.0, 1]}), "missing values"),
    (DUPLICATES_FILE, _duplicates().assign(label_conflict=False), "disagree"),
    (DUPLICATES_FILE, _duplicates().assign(near_duplicate=1), "expected bool"),
    (SLICES_FILE, pd.DataFrame({"index": [1, 2], "slice": [0, -2]}), "below -1"),
    (SLICES_FILE, pd.DataFrame({"index": [1, 2], "slice": [0, 2**40]}), "range"),
])
def test_bad_tables_are_refused_on_write_and_on_read(run, name, df, message):
    with pytest.raises(EvidenceError, match=message):
        write_table(run, name, df)
    assert not (run / name).exists()
    df.to_parquet(run / name)  # as another tool (or a bug) might write it
    with pytest.raises(EvidenceError, match=message) as caught:
        files.read_table(run, name)
    assert f"{run / name}" in str(caught.value) and "evidence --run demo-run" in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"PAR1 truncated", b"\x00" * 100])
def test_garbage_parquet_is_an_evidence_error(run, content):
    (run / MAP_FILE).write_bytes(content)
    with pytest.raises(EvidenceError, match="cannot be read"):
        read_map(run)


def test_missing_files_say_how_to_compute_them(run):
    for reader in (read_neighbours, read_map, read_duplicates, read_slices, read_saliency, read_embeddings):
        with pytest.raises(MissingEvidence, match="is missing; run `python -m cifar_mtl evidence --run demo-run`"):
            reader(run)


def test_unknown_table_name_is_a_programming_error(run):
    with pytest.raises(ValueError, match="not an evidence table"):
        write_table(run, "notes.parquet", pd.DataFrame())


def test_status_marks_present_valid_files_only(run):
    assert evidence_status(run) == dict.fromkeys(files.FILES, False)
    write_embeddings(run, _emb(4))
    write_table(run, NEIGHBOURS_FILE, _neighbours())
    (run / MAP_FILE).write_bytes(b"broken")
    status = evidence_status(run)
    assert status[EMBEDDINGS_FILE] and status[NEIGHBOURS_FILE]
    assert not status[MAP_FILE] and not status[SLICES_FILE]
    assert set(status) == set(files.FILES)
    assert evidence_status(run / "no-such-run") == dict.fromkeys(files.FILES, False)


def test_writes_are_atomic_and_leave_no_temporary_files(run, monkeypatch):
    write_table(run, MAP_FILE, pd.DataFrame({"index": [0], "x": [1.0], "y": [2.0]}))

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail)
    with pytest.raises(OSError, match="disk full"):
        write_table(run, MAP_FILE, pd.DataFrame({"index": [7], "x": [1.0], "y": [2.0]}))
    monkeypatch.undo()
    assert read_map(run)["index"].tolist() == [0]  # the old file is whole
    assert sorted(os.listdir(run)) == [MAP_FILE]
