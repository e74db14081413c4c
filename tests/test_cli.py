"""The command line: unknown runs, refusals, terminal tables, TensorFlow's start-up noise."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cifar_mtl import cli
from cifar_mtl.runs import run_dir
from cifar_mtl.synthetic import make_fake_run

ROOT = Path(__file__).resolve().parent.parent
TF_NOISE = ("oneDNN", "absl::InitializeLog", "cuInit", "cudart_stub", "cpu_feature_guard")


def python(home, code: str, env_extra=None):
    """Run `code` in a fresh interpreter (no TensorFlow loaded yet) with `home` as the artifacts home."""
    env = {**os.environ, "CIFAR_MTL_HOME": str(home)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the conftest sets it; a user's shell usually does not
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def run_main(capsys, *argv):
    """`cli.main(argv)` in this process: (exit code, stdout, stderr)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- runs named on the command line ------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["export", "--run", "nope"],
    ["export", "--run", "nope", "--long"],
    ["mislabels", "--run", "nope"],
    ["mislabels", "--run", "a", "--run", "nope"],
    ["compare", "--run", "nope", "--run", "a"],
    ["compare", "--run", "a", "--run", "nope"],
    ["predict", "--run", "nope"],
])
def test_an_unknown_run_is_named_as_unknown(home, capsys, argv):
    make_fake_run("a", home, n=50)
    code, out, err = run_main(capsys, *argv)
    assert code == cli.EXIT_USAGE and out == ""
    assert err.splitlines() == [
        f"error: no run named 'nope' under {home / 'runs'}; `python -m cifar_mtl runs` lists the runs "
        "(set CIFAR_MTL_HOME for another artifacts home)"
    ]
    assert "predictions.parquet" not in err


@pytest.mark.parametrize("command", ["export", "mislabels", "predict"])
def test_an_invalid_run_id_is_a_bad_argument(home, capsys, command):
    code, _, err = run_main(capsys, command, "--run", "../escape")
    assert code == cli.EXIT_USAGE and err.startswith("error: invalid run id '../escape'")


def test_predict_checks_the_run_before_loading_tensorflow(home):
    done = python(home, "import sys\nfrom cifar_mtl.cli import main\n"
                        "code = main(['predict', '--run', 'nope'])\nprint(code, 'tensorflow' in sys.modules)")
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert len(done.stderr.splitlines()) == 1 and "no run named 'nope'" in done.stderr


@pytest.mark.slow  # starts TensorFlow in a subprocess
def test_predict_on_a_real_run_shows_no_tensorflow_start_up_noise(home):
    make_fake_run("nomodel", home, n=50)
    config = run_dir("nomodel", home) / "config.json"
    values = json.loads(config.read_text())
    values.pop("synthetic")  # a trainable config, so predict gets as far as looking for the model
    config.write_text(json.dumps(values))
    done = python(home, "import sys\nfrom cifar_mtl.cli import main\nsys.exit(main(['predict', '--run', 'nomodel']))")
    assert done.returncode == cli.EXIT_FAILED
    assert done.stderr.splitlines() == ["error: run 'nomodel': model.keras is missing; train the run first"]


def test_tensorflow_noise_filter_keeps_errors_and_tracebacks():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1795840135.894848    6325 port.cc:153] oneDNN custom operations are on.\n"
        "W0000 00:00:1795840135.895504    6325 some.cc:31] a warning\n"
        "E0000 00:00:1795840141.124367    6424 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
        "E0000 00:00:1795840141.124367    6424 op_kernel.cc:1]  OOM when allocating tensor\n"
        "Traceback (most recent call last):\n"
        "ValueError: something real\n"
    )
    assert cli.drop_tf_noise(text) == (
        "E0000 00:00:1795840141.124367    6424 op_kernel.cc:1]  OOM when allocating tensor\n"
        "Traceback (most recent call last):\n"
        "ValueError: something real\n"
    )


@pytest.mark.slow  # starts TensorFlow in a subprocess
def test_a_user_asking_for_tensorflow_logs_gets_them(home):
    done = python(home, "from cifar_mtl.cli import import_tensorflow_quietly as q\nq()",
                  env_extra={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert done.returncode == 0 and any(word in done.stderr for word in TF_NOISE)
    done = python(home, "import os\nfrom cifar_mtl.cli import import_tensorflow_quietly as q\nq()\n"
                        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    assert done.returncode == 0 and done.stdout.strip() == "2"
    assert not any(word in done.stderr for word in TF_NOISE), done.stderr


# --- compare -------------------------------------------------------------------------------


def test_compare_refuses_a_run_with_itself(home, capsys):
    make_fake_run("a", home, n=50)
    code, out, err = run_main(capsys, "compare", "--run", "a", "--run", "a")
    assert code == cli.EXIT_USAGE and out == ""
    assert "two different runs" in err and "'a' twice" in err and "p =" not in out


def test_compare_without_verdicts_prints_the_original_labels_only(home, capsys):
    make_fake_run("a", home, n=50, seed=1)
    make_fake_run("b", home, n=50, seed=2)
    code, out, err = run_main(capsys, "compare", "--run", "a", "--run", "b")
    assert code == cli.EXIT_OK and len(out.strip().splitlines()) == 3 and "corrected" not in out
    assert not (home / "cifar-mtl.sqlite").exists(), "a read creates no review database"


def test_compare_prints_the_corrected_labels_when_verdicts_exist(home, capsys):
    from cifar_mtl.compare import compare_with_corrections
    from cifar_mtl.runs import load_predictions
    from cifar_mtl.stores.database import default_path
    from cifar_mtl.stores.reviews import ReviewStore

    make_fake_run("a", home, n=50, seed=1)
    make_fake_run("b", home, n=50, seed=2)
    a, b = load_predictions("a"), load_predictions("b")
    wrong = a.loc[~a["correct"]].iloc[0]  # an error of A, confirmed with A's answer as the true label
    with ReviewStore(default_path(home)) as store:
        store.set_mislabel("a", int(wrong["index"]), "ann", "confirmed", int(wrong["pred"]))
        lc = compare_with_corrections(a, b, store.current_mislabels())
    assert lc.n_changed == 1 and lc.corrected.accuracy_a == lc.original.accuracy_a + 1 / 50
    code, out, err = run_main(capsys, "compare", "--run", "a", "--run", "b")
    assert code == cli.EXIT_OK, err
    original, corrected = out.strip().split("\n\n")
    assert original.splitlines()[0].startswith(f"A a: accuracy {lc.original.accuracy_a:.2%}")
    lines = corrected.splitlines()
    assert lines[0].startswith("On the corrected test labels: Reviewers corrected 1 of the 50 test labels (1 verdict;")
    assert lines[1].startswith(f"A a: corrected accuracy {lc.corrected.accuracy_a:.2%} (95% CI {lc.corrected.ci_a[0]:.2%}-")
    assert lines[3].endswith(f"B fixed {lc.corrected.n_fixed}, broke {lc.corrected.n_broken}; "
                             f"McNemar exact p = {lc.corrected.p_value:.2g}")


# --- export ----------------------------------------------------------------------------------


def test_export_refuses_a_missing_out_folder(home, tmp_path, capsys):
    make_fake_run("a", home, n=50)
    target = tmp_path / "no" / "such" / "x.csv"
    code, out, err = run_main(capsys, "export", "--run", "a", "--out", str(target))
    assert code == cli.EXIT_FAILED and out == ""
    assert f"{target.parent} does not exist" in err and "mkdir -p" in err
    assert not (tmp_path / "no").exists()


def test_export_without_reviews_says_the_file_is_header_only(home, capsys):
    make_fake_run("quiet", home, n=50)
    code, out, err = run_main(capsys, "export", "--run", "quiet")
    assert code == cli.EXIT_OK
    path = Path(out.strip())
    assert path.read_text().splitlines()[0].startswith("index,") and len(path.read_text().splitlines()) == 1
    assert "no reviews yet" in err and "only the header row" in err and path.name in err


# --- mislabels -------------------------------------------------------------------------------


def test_mislabels_prints_the_top_of_the_ranking(home, capsys):
    make_fake_run("a", home, n=200, seed=3)
    code, out, err = run_main(capsys, "mislabels", "--run", "a", "--top", "25")
    assert code == cli.EXIT_OK, err
    lines = out.splitlines()
    ranked = pd.read_csv(lines[0])
    assert len(ranked) == 25
    assert lines[2] == "Most suspect labels (10 of 25, lowest label quality first):"
    assert lines[3].split() == ["rank", "image", "given", "label", "suggested", "label", "label", "quality"]
    table_end = lines.index("", 4)
    rows = [ln.split() for ln in lines[4:table_end]]
    assert len(rows) == 10
    assert lines[table_end + 1].startswith("to review without the app:")
    assert "verdicts import" in lines[table_end + 1]
    for row, (_, want) in zip(rows, ranked.head(10).iterrows()):
        assert row == [str(want["rank"]), str(want["index"]), want["label_name"], want["suggested_name"],
                       f"{want['quality']:.4f}"]


def test_mislabels_top_must_be_positive(home, capsys):
    make_fake_run("a", home, n=50)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["mislabels", "--run", "a", "--top", "0"])
    assert exit_.value.code == cli.EXIT_USAGE
    assert "--top: expected a whole number of at least 1, got 0" in capsys.readouterr().err


def test_mislabels_datalab_computes_and_saves_the_flags_then_ranks_with_them(home, capsys):
    from cifar_mtl.evidence.files import write_embeddings
    from cifar_mtl.mislabels import DATALAB_COLUMNS, TRAIN_PREDICTIONS_FILE, read_datalab
    from cifar_mtl.predictions import predictions_table
    from cifar_mtl.synthetic import fake_probabilities

    folder = run_dir("cv", home)
    folder.mkdir(parents=True)
    labels = np.arange(100) % 10
    table = predictions_table(fake_probabilities(labels, accuracy=0.9, seed=1), labels, index=np.arange(100))
    table.assign(fold=(np.arange(100) % 2).astype("int8")).to_parquet(folder / TRAIN_PREDICTIONS_FILE, index=False)
    code, out, err = run_main(capsys, "mislabels", "--split", "train", "--run", "cv", "--datalab")
    assert code == cli.EXIT_FAILED and "no training embeddings" in err and out == ""
    rng = np.random.default_rng(2)
    write_embeddings(folder, rng.normal(size=(10, 8)), rng.normal(size=(100, 8)))
    code, out, err = run_main(capsys, "mislabels", "--split", "train", "--run", "cv", "--datalab", "--top", "20")
    assert code == cli.EXIT_OK, err
    assert "Datalab on 100 training images of run cv" in err and re.search(r"issues\) in \d+\.\d s, saved to ", err)
    written = pd.read_csv(out.splitlines()[0])
    assert len(written) == 20 and all(c in written.columns for c in DATALAB_COLUMNS)
    saved = read_datalab("cv", home).set_index("index")
    assert written["is_label_issue"].tolist() == saved.loc[written["index"], "is_label_issue"].tolist()
    code, out, err = run_main(capsys, "mislabels", "--run", "cv", "--datalab")
    assert code == cli.EXIT_USAGE and "--split train" in err
    code, out, err = run_main(capsys, "mislabels", "--split", "train", "--run", "cv", "--embeddings-from", "cv")
    assert code == cli.EXIT_USAGE and "add --datalab" in err
    code, out, err = run_main(capsys, "mislabels", "--split", "train", "--run", "cv", "--datalab",
                              "--embeddings-from", "nope")
    assert code == cli.EXIT_USAGE and "nope" in err and out == ""


# --- terminal tables -------------------------------------------------------------------------


def test_runs_table_is_made_for_a_terminal():
    df = pd.DataFrame({
        "run_id": ["good", "broken"],
        "state": ["succeeded", None],
        "variant": ["single", None],
        "label_smoothing": [0.1, np.nan],
        "epochs": [18.0, np.nan],
        "accuracy": [0.69761, np.nan],
        "cross_group_errors": [2156.0, np.nan],
        "started_at": ["2026-11-25T21:03:31+0000", None],
        "problem": [None, "run 'broken': config.json is missing (" + "/very/long/path" * 20 + ")\nsecond line"],
    })
    text = cli.runs_table(df)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["run", "state", "variant"]
    assert "2156" in lines[1] and "2156.0" not in text and "nan" not in text.lower() and "None" not in text
    assert "69.76%" in lines[1] and "2026-11-25 21:03" in lines[1]
    assert lines[2].split()[1:8] == ["-"] * 7
    assert lines[2].endswith("...") and "second line" not in text
    assert max(map(len, lines)) < 160


def test_runs_command_prints_the_table(home, capsys):
    make_fake_run("a", home, n=100, accuracy=0.8, seed=1)
    code, out, _ = run_main(capsys, "runs")
    assert code == cli.EXIT_OK
    row = out.splitlines()[1].split()
    assert row[:5] == ["a", "succeeded", "multitask", "0.1", "3"] and row[5].endswith("%")


@pytest.mark.parametrize("value, text", [
    (None, "-"), (np.nan, "-"), (pd.NA, "-"), (pd.NaT, "-"), (3.0, "3"), (np.int64(7), "7"),
    (0.125, "0.125"), (True, "yes"), ("a\n  b", "a b"),
])
def test_cell_text(value, text):
    assert cli.cell_text(value) == text


def test_clip():
    assert cli.clip("abcdef", 10) == "abcdef"
    assert cli.clip("abcdefghijkl", 8) == "abcde..."
    assert cli.clip("abc", None) == "abc"


# --- a reader that goes away -------------------------------------------------------------


@pytest.mark.parametrize("command", [["runs"], ["mislabels", "--run", "a", "--top", "25"], ["jobs", "list"]])
def test_a_closed_pipe_ends_the_command_quietly(home, command):
    # As in `cifar-mtl runs | head -1` once head has exited: every write to stdout fails.
    make_fake_run("a", home, n=200, seed=3)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "cifar_mtl", *command], stdout=write_end, stderr=subprocess.PIPE,
                              env={**os.environ, "CIFAR_MTL_HOME": str(home)}, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == cli.EXIT_FAILED
    assert done.stderr == ""  # no "error: [Errno 32] Broken pipe", no traceback
