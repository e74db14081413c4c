"""A run's errors next to their evidence (cifar_mtl.triage): flags, filters, map points, neighbours."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cifar_mtl import analysis, triage
from cifar_mtl.runs import load_predictions, run_dir
from cifar_mtl.synthetic import make_fake_run
from tests.evidence_fixture import N_DUPLICATES, error_indices, write_evidence

TRAIN_LABELS = np.arange(50) % 10


@pytest.fixture
def run(home):
    make_fake_run("tri", home, n=300, accuracy=0.7, seed=4)
    preds = load_predictions("tri")
    folder = write_evidence(run_dir("tri"), preds, TRAIN_LABELS)
    from cifar_mtl.evidence import files

    return preds, {"duplicates": files.read_duplicates(folder), "slices": files.read_slices(folder),
                   "neighbours": files.read_neighbours(folder), "layout": files.read_map(folder),
                   "saliency": files.read_saliency(folder)}


def test_evidence_columns_follow_each_image_whatever_the_tables_order(run):
    preds, ev = run
    errors = analysis.error_table(preds)  # sorted by loss: another order than the evidence files
    suggested = pd.DataFrame({"index": [int(errors["index"].iloc[0])] * 2, "category": ["pose", "colour"]})
    shuffled = ev["duplicates"].sample(frac=1, random_state=0)
    out = triage.add_evidence(errors, duplicates=shuffled, slices=ev["slices"], suggested=suggested)
    assert len(out) == len(errors) and "near_duplicate" not in errors.columns  # a copy
    dup = ev["duplicates"].set_index("index").loc[out["index"]]
    assert (out["near_duplicate"].to_numpy() == dup["near_duplicate"].to_numpy()).all()
    assert (out["label_conflict"].to_numpy() == dup["label_conflict"].to_numpy()).all()
    assert (out["duplicate_index"].to_numpy() == dup["train_index"].to_numpy()).all()
    assert (out["slice"].to_numpy() == ev["slices"].set_index("index").loc[out["index"], "slice"].to_numpy()).all()
    assert out["suggested"].iloc[0] == ("colour", "pose") and out["suggested"].iloc[1:].map(len).eq(0).all()


def test_images_missing_from_an_evidence_table_get_neutral_values(run):
    preds, ev = run
    table = analysis.error_table(preds, errors_only=False)  # correct images have no slice
    out = triage.add_evidence(table, duplicates=ev["duplicates"].iloc[:5], slices=ev["slices"])
    assert out["slice"][table["correct"].to_numpy()].eq(triage.NO_SLICE).all()
    known = out["index"].isin(ev["duplicates"]["index"].iloc[:5])
    assert not out.loc[~known, "near_duplicate"].any() and out.loc[~known, "duplicate_index"].eq(-1).all()
    assert out.loc[~known, "duplicate_similarity"].isna().all()


def test_filters_keep_exactly_the_flagged_images(run):
    preds, ev = run
    planted = error_indices(preds)[:N_DUPLICATES]
    suggested = pd.DataFrame({"index": planted[:2], "category": ["pose", "clutter"]})
    errors = triage.add_evidence(analysis.error_table(preds), duplicates=ev["duplicates"], slices=ev["slices"],
                                 suggested=suggested)
    assert set(triage.filter_evidence(errors, near_duplicate=True)["index"]) == set(planted)
    assert triage.filter_evidence(errors, label_conflict=True)["index"].tolist() == [planted[0]]
    members = ev["slices"].loc[ev["slices"]["slice"] == 1, "index"]
    assert set(triage.filter_evidence(errors, slice_id=1)["index"]) == set(members)
    assert triage.filter_evidence(errors, suggested="pose")["index"].tolist() == [planted[0]]
    # the order of the error table is kept
    kept = triage.filter_evidence(errors, slice_id=1)["index"].tolist()
    assert kept == [i for i in errors["index"] if i in set(members)]
    assert triage.filter_evidence(errors).equals(errors)


def test_a_filter_without_its_evidence_says_so_instead_of_finding_nothing(run):
    preds, _ = run
    errors = analysis.error_table(preds)
    with pytest.raises(ValueError, match="near-duplicate"):
        triage.filter_evidence(errors, near_duplicate=True)
    with pytest.raises(ValueError, match="slices"):
        triage.filter_evidence(errors, slice_id=0)
    with pytest.raises(ValueError, match="suggestions"):
        triage.filter_evidence(errors, suggested="pose")


def test_slice_members_leave_out_the_chosen_images(run):
    _, ev = run
    members = np.sort(ev["slices"].loc[ev["slices"]["slice"] == 0, "index"].to_numpy())
    assert triage.slice_members(ev["slices"], 0).tolist() == members.tolist()
    assert triage.slice_members(ev["slices"], 0, leave_out=members[:2]).tolist() == members[2:].tolist()
    assert triage.slice_members(ev["slices"], 99).tolist() == []


def test_map_points_join_layout_predictions_and_tags(run):
    preds, ev = run
    i, j = (int(v) for v in error_indices(preds)[:2])
    tags = pd.DataFrame({"index": [i, j, j], "category": ["pose", "pose", "colour"], "reviewer": ["a", "a", "b"]})
    points = triage.map_points(ev["layout"].iloc[::-1], preds, tags)
    assert points["index"].tolist() == ev["layout"]["index"].iloc[::-1].tolist()  # the layout's order
    row = points.set_index("index")
    assert row.loc[i, "category"] == "pose" and row.loc[j, "category"] == triage.SEVERAL
    assert row.loc[j, "categories"] == ("colour", "pose")
    assert (points.drop(index=points.index[points["index"].isin([i, j])])["category"] == triage.UNTAGGED).all()
    p = preds.set_index("index").loc[points["index"]]
    assert (points["correct"].to_numpy() == p["correct"].to_numpy()).all()
    untagged = triage.map_points(ev["layout"], preds)
    assert (untagged["category"] == triage.UNTAGGED).all()


def test_colour_groups(run):
    preds, ev = run
    points = triage.map_points(ev["layout"], preds)
    assert triage.colour_groups(points, "true class").equals(points["label_name"])
    errors = triage.colour_groups(points, "correct or error")
    assert set(errors) == {"correct", "error"}
    assert ((errors == "error").to_numpy() == ~points["correct"].to_numpy()).all()
    with pytest.raises(ValueError, match="unknown colouring"):
        triage.colour_groups(points, "size")


def test_neighbours_and_saliency_of_one_image(run):
    preds, ev = run
    first = int(error_indices(preds)[0])
    near = triage.neighbours_of(ev["neighbours"].sample(frac=1, random_state=1), first)
    assert near["rank"].tolist() == list(range(1, 9))
    assert (np.diff(near["similarity"]) <= 0).all()
    assert near["train_name"].iloc[0] != ""
    assert triage.neighbours_of(ev["neighbours"], 10**6).empty
    pred_map, true_map = triage.saliency_of(ev["saliency"], first)
    assert pred_map.shape == true_map.shape == (32, 32) and pred_map[5, 5] == 255 and true_map[20, 20] == 200
    correct = int(preds.loc[preds["correct"], "index"].iloc[0])
    assert triage.saliency_of(ev["saliency"], correct) is None
