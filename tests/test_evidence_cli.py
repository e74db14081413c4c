"""`neighbours` and `slices` on the command line: tables, verdicts, and one-line refusals."""

import numpy as np
import pandas as pd
import pytest

from cifar_mtl import cli
from cifar_mtl.evidence import files
from cifar_mtl.evidence.build import build_evidence
from cifar_mtl.runs import load_predictions, run_dir
from cifar_mtl.synthetic import make_fake_run

N = 120


def run_main(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def evidence_run(home):
    """A generated run with neighbours, duplicates, map and slices from synthetic embeddings;
    test image 0 has a near-identical training twin with another label."""
    make_fake_run("ev", home, n=N, accuracy=0.6)
    preds = load_predictions("ev", home)
    rng = np.random.default_rng(0)
    test = rng.normal(size=(N, 8)) + np.eye(8)[preds["label"] % 8] * 2
    train = rng.normal(size=(300, 8))
    train[17] = test[0]
    train_labels = rng.integers(0, 10, 300)
    train_labels[17] = (preds["label"][0] + 1) % 10
    build_evidence(run_dir("ev", home), preds, test, train, train_labels)
    return run_dir("ev", home)


def test_neighbours_lists_training_images_and_the_verdict(evidence_run, capsys):
    code, out, err = run_main(capsys, "neighbours", "--run", "ev", "--index", "0")
    assert code == cli.EXIT_OK and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("test image 0: label ")
    assert lines[1].split() == ["rank", "training", "image", "label", "similarity"]
    assert lines[2].split()[:2] == ["1", "17"] and lines[2].split()[-1] == "1.0000"
    assert len(lines) == 2 + 8 + 1
    assert lines[-1].startswith("near-duplicate: yes, of training image 17") and "LABEL CONFLICT" in lines[-1]
    out.encode("ascii")


def test_neighbours_says_no_for_an_ordinary_image(evidence_run, capsys):
    code, out, _ = run_main(capsys, "neighbours", "--run", "ev", "--index", "5")
    assert code == cli.EXIT_OK and out.splitlines()[-1].startswith("near-duplicate: no (closest: training image")


def test_neighbours_without_duplicates_file_still_lists(evidence_run, capsys):
    (evidence_run / files.DUPLICATES_FILE).unlink()
    code, out, _ = run_main(capsys, "neighbours", "--run", "ev", "--index", "3")
    assert code == cli.EXIT_OK
    assert out.splitlines()[-1].startswith("near-duplicate: unknown (") and "evidence --run ev" in out


@pytest.mark.parametrize("argv, message", [
    (["neighbours", "--run", "nope", "--index", "1"], "no run named 'nope'"),
    (["neighbours", "--run", "ev", "--index", str(N)], f"no neighbours for test image {N}"),
    (["slices", "--run", "nope"], "no run named 'nope'"),
])
def test_unknown_run_or_image_is_one_line_exit_2(evidence_run, capsys, argv, message):
    code, out, err = run_main(capsys, *argv)
    assert code == cli.EXIT_USAGE and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err


@pytest.mark.parametrize("index", ["-1", "three"])
def test_a_bad_index_is_refused_by_the_parser(evidence_run, capsys, index):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["neighbours", "--run", "ev", "--index", index])
    assert exit_.value.code == cli.EXIT_USAGE
    assert "test image index" in capsys.readouterr().err


@pytest.mark.parametrize("command, name", [(["neighbours", "--index", "0"], files.NEIGHBOURS_FILE),
                                           (["slices"], files.SLICES_FILE)])
def test_missing_or_damaged_evidence_is_one_line_exit_2(evidence_run, capsys, command, name):
    (evidence_run / name).write_bytes(b"not parquet")
    code, out, err = run_main(capsys, command[0], "--run", "ev", *command[1:])
    assert code == cli.EXIT_USAGE and out == "" and len(err.splitlines()) == 1
    assert "cannot be read" in err and "python -m cifar_mtl evidence --run ev" in err
    (evidence_run / name).unlink()
    code, _, err = run_main(capsys, command[0], "--run", "ev", *command[1:])
    assert code == cli.EXIT_USAGE and f"{name} is missing" in err


def test_slices_prints_one_line_per_slice(evidence_run, capsys):
    code, out, err = run_main(capsys, "slices", "--run", "ev")
    assert code == cli.EXIT_OK and err == ""
    members = files.read_slices(evidence_run)
    lines = out.splitlines()
    assert lines[0].startswith(f"{len(members)} errors in {members['slice'].nunique()} slices")
    assert lines[1].split()[:2] == ["slice", "size"]
    body = lines[2:]
    assert len(body) == members["slice"].nunique()
    sizes = [int(line.split()[1]) for line in body]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == len(members)
    assert "->" in body[0] and "→" not in out


def test_slices_of_a_run_without_errors(home, capsys):
    make_fake_run("perfect", home, n=30, accuracy=1.0)
    folder = run_dir("perfect", home)
    files.write_table(folder, files.SLICES_FILE, pd.DataFrame({"index": [], "slice": []}, dtype="int32"))
    code, out, _ = run_main(capsys, "slices", "--run", "perfect")
    assert code == cli.EXIT_OK and "no misclassified images" in out
