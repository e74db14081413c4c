"""`cifar-mtl ...` (or `python -m cifar_mtl ...`): train, predict, list runs, compare two runs, export reviews, rank mislabels, run jobs and workers.

Exit codes: 0 done, 1 failed, 2 bad arguments or configuration, 130 cancelled.
"""

from __future__ import annotations

import argparse
import numbers
import os
import re
import sys
import tempfile
import time

from cifar_mtl.errors import UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
MISSING = "-"
ELLIPSIS = "..."  # ASCII: a terminal or pipe without UTF-8 must not turn a listing into a traceback
MISLABEL_ROWS = 10

# Lines TensorFlow (2.16+) writes through absl while it loads, before it reads
# TF_CPP_MIN_LOG_LEVEL: the absl banner, info/warning lines (oneDNN, CUDA stubs), and
# cuInit's complaint on a machine without a GPU driver. Everything else is kept.
_TF_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+\] "
    r"|E\d{4} [\d:.]+ +\d+ \S+\] failed call to cuInit"
)


class UsageError(UserError):
    """A bad command-line argument (exit code 2). The message says what to do instead."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cifar-mtl", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and write a run folder")
    t.add_argument("--config", required=True, help="a JSON configuration file, or a shipped config by name (cpu_fast, cpu_quick, ...)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    t.add_argument("--run-id", help="run folder name (default: <name>-<date>-<random>)")
    t.add_argument("--no-progress-bar", action="store_true", help="no terminal progress bar")

    cv = sub.add_parser("crossval", help="K-fold cross-validation: out-of-sample predictions for every training image")
    cv.add_argument("--config", help="a JSON configuration file or a shipped config (cpu_crossval, ...)")
    cv.add_argument("--folds", type=_positive_int, default=5, help="number of folds (default 5)")
    cv.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    cv.add_argument("--run-id", help="run folder name; an unfinished run of that name is resumed")
    cv.add_argument("--resume", metavar="RUN_ID", help="resume an unfinished cross-validation run at its first unfinished fold")
    cv.add_argument("--no-progress-bar", action="store_true", help="no terminal progress bar")
    cv.add_argument("--queue", action="store_true",
                    help="queue it as a job (`jobs show/cancel/resume`) instead of running it here")

    pr = sub.add_parser("predict", help="(re)write predictions.parquet and metrics.json of a run")
    pr.add_argument("--run", required=True, help="run id")

    ev = sub.add_parser("evidence", help="(re)compute a run's evidence: embeddings, neighbours, saliency, map, slices")
    ev.add_argument("--run", required=True, help="run id (its model.keras must be kept)")
    ev.add_argument("--test-only", action="store_true",
                    help="skip the 50,000 training images (no neighbours or near-duplicates)")

    nb = sub.add_parser("neighbours", help="a test image's nearest training images and near-duplicate verdict")
    nb.add_argument("--run", required=True, help="run id")
    nb.add_argument("--index", required=True, type=_image_index, help="test image index (0..9999)")

    sl = sub.add_parser("slices", help="a run's error slices: size and top true->predicted pairs")
    sl.add_argument("--run", required=True, help="run id")

    sub.add_parser("runs", help="table of runs with state and accuracy")

    e = sub.add_parser("export", help="error-category CSV of a run's reviewed images")
    e.add_argument("--run", required=True)
    e.add_argument("--long", action="store_true", help="one row per review event")
    e.add_argument("--out", help="output file in an existing folder (default: <home>/exports/...)")

    m = sub.add_parser("mislabels", help="test images ranked by label quality (cleanlab)")
    m.add_argument("--run", required=True, action="append", help="run id; repeat to combine runs")
    m.add_argument("--top", type=_positive_int, help="keep the N most suspect images")
    m.add_argument("--method", default="normalized_margin", choices=["normalized_margin", "self_confidence"])
    m.add_argument("--split", default="test", choices=["test", "train"],
                   help="test images of training runs, or training images of cross-validation runs (crossval)")
    m.add_argument("--out", help="output file in an existing folder (default: <home>/exports/...)")
    m.add_argument("--datalab", action="store_true",
                   help="with --split train: first compute and save cleanlab Datalab's flags (label, outlier, "
                        "near-duplicate) of the first run from its training embeddings; minutes on 50,000 images")
    m.add_argument("--embeddings-from", metavar="RUN_ID",
                   help="with --datalab: the training run whose training embeddings to use (a cross-validation "
                        "run has none of its own; the run must be on the same training images)")

    c = sub.add_parser("compare", help="two runs on the same test images: intervals, McNemar's exact test; "
                                          "also on the reviewer-corrected test labels when verdicts exist")
    c.add_argument("--run", required=True, action="append", help="run id: give it twice, A then B")

    j = sub.add_parser("jobs", help="retrain jobs: submit, list, show, cancel, logs", add_help=False)
    j.add_argument("rest", nargs=argparse.REMAINDER)

    w = sub.add_parser("worker", help="claim and train queued retrain jobs from the shared database "
                                      "(one per GPU machine; see README, Team)")
    w.add_argument("--home", help="the shared run folder (default: CIFAR_MTL_HOME, else ./artifacts)")
    w.add_argument("--name", help="this worker's name in the job table (default: host:pid)")
    w.add_argument("--poll", type=_seconds_arg, default=1.0, help="seconds between looks at the queue (default 1)")
    w.add_argument("--heartbeat", type=_seconds_arg, default=5.0, help="seconds between heartbeats (default 5)")
    w.add_argument("--grace", type=_seconds_arg, default=10.0,
                   help="seconds a cancelled training gets after SIGTERM before SIGKILL (default 10)")
    w.add_argument("--max-jobs", type=_positive_int, help="exit after this many jobs")
    w.add_argument("--exit-when-idle", action="store_true", help="exit when nothing is queued")
    w.add_argument("--python", default=sys.executable, help=argparse.SUPPRESS)  # the trainers' interpreter

    vd = sub.add_parser("verdicts", help="mislabel verdicts from the command line: import a filled-in ranking, list")
    vsub = vd.add_subparsers(dest="verdicts_command", required=True)
    vdi = vsub.add_parser("import", help="save the verdicts of a CSV file: `mislabels --out FILE` with a 'verdict' "
                                         "column (confirmed, rejected or unsure) filled where you judged")
    vdi.add_argument("file", help="the CSV file; a confirmed row's right label: its 'new_label' cell (class name or "
                                  "0-9), else the ranking's suggested class")
    vdi.add_argument("--run", required=True, help="the run the file ranks (for --split train: a cross-validation run)")
    vdi.add_argument("--reviewer", required=True, help="whose verdicts they are")
    vdi.add_argument("--split", default="test", choices=["test", "train"])
    vdl = vsub.add_parser("list", help="current verdicts, newest first")
    vdl.add_argument("--run", help="only verdicts made on this run")
    vdl.add_argument("--reviewer", help="only this reviewer's verdicts")
    vdl.add_argument("--split", default="test", choices=["test", "train"])

    lb = sub.add_parser("labels", help="label sets: corrections of training labels built from verdicts")
    lsub = lb.add_subparsers(dest="labels_command", required=True)
    lbb = lsub.add_parser("build", help="build the next version of a label set from the training-image verdicts")
    lbb.add_argument("--name", required=True, help="the set's name (letters, digits, '_', '-')")
    lbb.add_argument("--reviewer", action="append", help="count this reviewer's verdicts (repeat; default: all)")
    lbb.add_argument("--min-agree", type=_positive_int, default=1,
                     help="reviewers who must cast the winning vote on an image (default 1)")
    lbb.add_argument("--run", action="append", help="only verdicts made on this cross-validation run (repeat)")
    lbb.add_argument("--by", help="who builds it, for the manifest (default: the login name)")
    lsub.add_parser("list", help="every version of every label set")
    lbs = lsub.add_parser("show", help="a label set's manifest and first rows")
    lbs.add_argument("spec", metavar="NAME[@vK]", help="a set's name (latest version) or NAME@vK")
    lbs.add_argument("--rows", type=_positive_int, default=20, help="rows to print (default 20)")
    lbe = lsub.add_parser("export", help="write a label set version as CSV")
    lbe.add_argument("spec", metavar="NAME[@vK]")
    lbe.add_argument("--out", required=True, help="output CSV file in an existing folder")

    d = sub.add_parser("db", help="the reviews-and-jobs database: copy an SQLite file into PostgreSQL")
    dsub = d.add_subparsers(dest="db_command", required=True)
    dc = dsub.add_parser("copy", help="copy every review, category, bulk action and job into an empty "
                                      "PostgreSQL database, printing counts per table")
    dc.add_argument("--to", required=True, metavar="URL", help="postgresql://user:password@host:port/database")
    dc.add_argument("--from", dest="source", metavar="FILE",
                    help="the SQLite file (default: <home>/cifar-mtl.sqlite)")
    dc.add_argument("--home", help="artifacts home whose cifar-mtl.sqlite to copy (default: CIFAR_MTL_HOME)")
    return p


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value == value and 0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _image_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a test image index (a whole number), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a test image index of 0 or more, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # here, not at exit, so that a reader gone away is caught below
        return code
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    except BrokenPipeError:
        # The reader closed the pipe (`... | head`): stop quietly, as other command-line tools do.
        _stdout_to_devnull()
        return EXIT_FAILED


def _stdout_to_devnull() -> None:
    """Point file descriptor 1 at /dev/null, so that the flush at exit has somewhere to go."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # a stdout without a file descriptor (a test's capture)
        pass
    finally:
        os.close(devnull)


def _dispatch(args) -> int:
    from cifar_mtl.config import ConfigError

    try:
        if args.command == "train":
            return _train(args)
        if args.command == "crossval":
            return _crossval(args)
        if args.command == "predict":
            return _predict(args.run)
        if args.command == "evidence":
            return _evidence(args.run, with_train=not args.test_only)
        if args.command == "neighbours":
            return _neighbours(args.run, args.index)
        if args.command == "slices":
            return _slices(args.run)
        if args.command == "runs":
            return _runs()
        if args.command == "export":
            return _export(args)
        if args.command == "mislabels":
            return _mislabels(args)
        if args.command == "compare":
            return _compare(args.run)
        if args.command == "jobs":
            return jobs_main(args.rest)
        if args.command == "worker":
            return _worker(args)
        if args.command == "db":
            return _db_copy(args)
        if args.command == "labels":
            return _labels(args)
        if args.command == "verdicts":
            return _verdicts(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        raise  # not an error of the command's: main() ends quietly
    # UserError: every library error meant for people (ConfigError, RunError, DataError,
    # ReviewError, ...); ValueError: a bad run id; OSError: a file that cannot be read or written.
    except (UserError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED
    raise AssertionError(f"unhandled command {args.command}")


# --- runs named on the command line ----------------------------------------------------


def check_runs_exist(run_ids: list[str]) -> None:
    """Raise UsageError unless every id is valid and names a run folder under the home.

    Done before loading anything, so an unknown run does not read as a run with a
    missing file, and no TensorFlow start-up precedes the message.
    """
    from cifar_mtl.runs import run_dir, runs_root

    for run_id in run_ids:
        try:
            folder = run_dir(run_id)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not folder.is_dir():
            raise UsageError(
                f"no run named {run_id!r} under {runs_root()}; "
                "`python -m cifar_mtl runs` lists the runs (set CIFAR_MTL_HOME for another artifacts home)"
            )


# --- TensorFlow start-up -------------------------------------------------------------


def drop_tf_noise(text: str) -> str:
    """`text` without TensorFlow's start-up notices (see `_TF_NOISE`); errors and tracebacks stay."""
    return "".join(ln for ln in text.splitlines(keepends=True) if not _TF_NOISE.match(ln))


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras without their start-up notices on stderr.

    Sets TF_CPP_MIN_LOG_LEVEL to 2 unless the user chose a level. TensorFlow writes
    its loading notices before it reads that variable, so they are caught on file
    descriptor 2 while it loads and dropped; anything else written then is passed on.
    A user who sets the level to 0 or 1 sees everything.
    """
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or level in ("0", "1"):
        import keras  # noqa: F401  (already loaded, or the user wants every line)

        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401, F811  (loads TensorFlow)
            import tensorflow as tf

            tf.config.list_physical_devices()  # where cuInit complains on a machine without a GPU
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            sys.stderr.write(drop_tf_noise(captured.read().decode("utf-8", errors="replace")))
            sys.stderr.flush()


# --- commands ------------------------------------------------------------------------


def _train(args) -> int:
    from cifar_mtl.config import load_config_file
    from cifar_mtl.runs import new_run_id, validate_run_id

    from cifar_mtl.labelsets import resolve_labels

    config = resolve_labels(load_config_file(args.config, args.set))  # an unknown label set: before TensorFlow
    run_id = validate_run_id(args.run_id) if args.run_id else new_run_id(config.name)
    print(f"run {run_id}", flush=True)
    import_tensorflow_quietly()
    # The training package imports TensorFlow: only now, after the quiet import above.
    from cifar_mtl.training.fit import train
    from cifar_mtl.training.tracking import TrainingCancelled

    try:
        metrics = train(config, run_id, progress_bar=not args.no_progress_bar)
    except TrainingCancelled:
        print(f"run {run_id}: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as exc:  # the run folder already records it as failed
        print(f"run {run_id}: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"run {run_id}: test accuracy {metrics['accuracy']:.4f}, "
        f"cross-group errors {metrics['cross_group_errors']}, {metrics['seconds'] / 60:.1f} min"
    )
    return EXIT_OK


def _crossval(args) -> int:
    """`crossval`: train K fold models (or resume an unfinished run) and write train_predictions.parquet."""
    from cifar_mtl.config import load_config_file
    from cifar_mtl.runs import new_run_id, validate_run_id

    if args.resume and (args.config or args.set or args.run_id):
        raise UsageError("--resume RUN_ID takes the run's own settings: leave out --config, --set and --run-id")
    if not args.resume and not args.config:
        raise UsageError("give --config (e.g. --config cpu_crossval), or --resume RUN_ID")
    if args.queue:
        if args.resume:
            raise UsageError("--queue with --resume: resume a queued cross-validation job with "
                             "`python -m cifar_mtl jobs resume JOB_ID`")
        return jobs_main(["submit", "--config", args.config, "--crossval", str(args.folds),
                          *(f"--set={s}" for s in args.set), *(["--run-id", args.run_id] if args.run_id else [])])
    if args.resume:
        check_runs_exist([args.resume])
    else:
        config = load_config_file(args.config, args.set)
        run_id = validate_run_id(args.run_id) if args.run_id else new_run_id(f"cv-{config.name}")
    import_tensorflow_quietly()
    from cifar_mtl.training.crossval import crossval, resume_config
    from cifar_mtl.training.tracking import TrainingCancelled

    if args.resume:
        run_id = args.resume
        config, folds = resume_config(run_id)
    else:
        folds = args.folds
    print(f"run {run_id}", flush=True)
    try:
        metrics = crossval(config, run_id, k=folds, resume=bool(args.resume) or None,
                           progress_bar=not args.no_progress_bar)
    except TrainingCancelled:
        print(f"run {run_id}: cancelled; resume with `python -m cifar_mtl crossval --resume {run_id}`", file=sys.stderr)
        return EXIT_CANCELLED
    except UserError:
        raise
    except Exception as exc:  # the run folder already records it as failed
        print(f"run {run_id}: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"run {run_id}: out-of-sample training accuracy {metrics['oos_accuracy']:.4f} on {metrics['n_train']:,} "
        f"images ({metrics['folds']} folds), test accuracy of the fold models' average {metrics['accuracy']:.4f}, "
        f"{metrics['seconds'] / 60:.1f} min"
    )
    return EXIT_OK


def _evidence(run_id: str, with_train: bool) -> int:
    check_runs_exist([run_id])
    import_tensorflow_quietly()
    from cifar_mtl.training.evidence import evidence_run

    evidence_run(run_id, with_train=with_train)
    return 0


def _predict(run_id: str) -> int:
    check_runs_exist([run_id])
    import_tensorflow_quietly()
    from cifar_mtl.training.predict import predict_run

    metrics = predict_run(run_id)
    print(f"run {run_id}: accuracy {metrics['accuracy']:.4f} on {metrics['n_test']} test images")
    return EXIT_OK


def _export(args) -> int:
    from cifar_mtl.export import export_error_csv

    check_runs_exist([args.run])
    path, n_rows = export_error_csv(args.run, long=args.long, out=args.out)
    print(path)
    if n_rows == 0:
        # Still a file: a script expecting one gets the header; the person gets told why it is empty.
        what = "review events" if args.long else "reviews"
        print(f"note: run {args.run} has no {what} yet, so {path.name} holds only the header row; "
              "tag or note its errors in the app (streamlit run app.py) and export again", file=sys.stderr)
    return EXIT_OK


def _mislabels(args) -> int:
    from cifar_mtl.export import export_mislabels_csv

    check_runs_exist(args.run)
    if args.embeddings_from and not args.datalab:
        raise UsageError("--embeddings-from chooses the embeddings Datalab uses: add --datalab")
    if args.datalab:
        if args.split != "train":
            raise UsageError("--datalab flags training images: add --split train and a cross-validation run")
        from cifar_mtl.mislabels import write_datalab

        if args.embeddings_from:
            check_runs_exist([args.embeddings_from])
        write_datalab(args.run[0], log=lambda line: print(line, file=sys.stderr), embeddings_from=args.embeddings_from)
    path, ranked = export_mislabels_csv(args.run, top=args.top, method=args.method, out=args.out, split=args.split)
    print(path)
    print()
    print(mislabels_table(ranked))
    if len(args.run) == 1 and not ranked.empty:
        print(f"\nto review without the app: fill a 'verdict' column (confirmed, rejected or unsure; a "
              f"'new_label' column for a label other than the suggested one) in {path.name}, then run "
              f"`python -m cifar_mtl verdicts import {path} --run {args.run[0]} --split {args.split} "
              "--reviewer NAME`")
    return EXIT_OK


def _compare(run_ids: list[str]) -> int:
    from cifar_mtl.compare import compare_runs, compare_with_corrections, corrected_summary_text, summary_text
    from cifar_mtl.runs import load_predictions

    if len(run_ids) != 2:
        raise UsageError(f"compare takes exactly two runs (--run A --run B), got {len(run_ids)}")
    if run_ids[0] == run_ids[1]:
        raise UsageError(f"compare needs two different runs, got {run_ids[0]!r} twice; "
                         "`python -m cifar_mtl runs` lists the runs")
    check_runs_exist(run_ids)
    a, b = (load_predictions(r) for r in run_ids)
    print(summary_text(compare_runs(a, b), *run_ids))
    mislabels = _test_verdicts()
    if len(mislabels):
        print()
        print(corrected_summary_text(compare_with_corrections(a, b, mislabels), *run_ids))
    return EXIT_OK


def _existing_review_target():
    """The review database to read, or None when the home has none yet (none is created for a read)."""
    from pathlib import Path

    from cifar_mtl.stores.database import default_target, is_postgres_url, legacy_path

    target = default_target()
    if not is_postgres_url(target) and not (Path(target).is_file() or legacy_path(target).is_file()):
        return None
    return target


def _test_verdicts():
    """Every reviewer's current verdicts on test images (`ReviewStore.current_mislabels()`);
    an empty table when the home has no review database yet."""
    import pandas as pd

    from cifar_mtl.stores.reviews import ReviewStore

    target = _existing_review_target()
    if target is None:
        return pd.DataFrame()
    with ReviewStore(target) as store:
        return store.current_mislabels()


def _runs() -> int:
    from cifar_mtl.runs import home, list_runs

    df = list_runs()
    if df.empty:
        print(f"no runs under {home() / 'runs'}")
        return EXIT_OK
    print(runs_table(df))
    return EXIT_OK


# --- evidence: neighbours and slices ------------------------------------------------------


def _evidence_folder(run_id: str):
    from cifar_mtl.runs import run_dir

    check_runs_exist([run_id])
    return run_dir(run_id)


def _neighbours(run_id: str, index: int) -> int:
    """`neighbours --run ID --index N`: the image's nearest training images, then the verdict."""
    from cifar_mtl.evidence import files

    folder = _evidence_folder(run_id)
    try:
        table = files.read_neighbours(folder)
    except files.EvidenceError as exc:  # missing or damaged: say which file and how to recompute it
        raise UsageError(str(exc)) from None
    rows = table[table["index"] == index].sort_values("rank")
    if rows.empty:
        raise UsageError(f"run {run_id!r} has no neighbours for test image {index}: its "
                         f"{files.NEIGHBOURS_FILE} covers images {table['index'].min()}..{table['index'].max()}")
    print(_image_line(run_id, index))
    print(neighbours_table(rows))
    print(_duplicate_line(folder, index))
    return EXIT_OK


def _image_line(run_id: str, index: int) -> str:
    """'test image N: label X, predicted Y (an error)', or just the index without readable predictions."""
    from cifar_mtl.labels import class_name
    from cifar_mtl.runs import load_predictions

    try:
        preds = load_predictions(run_id)
    except UserError:
        return f"test image {index}, nearest training images (run {run_id}):"
    row = preds[preds["index"] == index]
    if row.empty:
        return f"test image {index} (not in the predictions table), nearest training images:"
    label, pred = int(row["label"].iloc[0]), int(row["pred"].iloc[0])
    verdict = "correct" if label == pred else "an error"
    return (f"test image {index}: label {class_name(label)}, predicted {class_name(pred)} ({verdict}); "
            "nearest training images:")


def _duplicate_line(folder, index: int) -> str:
    from cifar_mtl.evidence import files
    from cifar_mtl.labels import class_name

    try:
        dup = files.read_duplicates(folder)
    except files.EvidenceError as exc:
        return f"near-duplicate: unknown ({exc})"
    row = dup[dup["index"] == index]
    if row.empty:
        return f"near-duplicate: unknown ({files.DUPLICATES_FILE} has no row for image {index})"
    r = row.iloc[0]
    pixels = "" if is_missing(r["pixel_similarity"]) else f", pixel similarity {r['pixel_similarity']:.3f}"
    pair = (f"training image {int(r['train_index'])} ({class_name(r['train_label'])}), "
            f"similarity {r['similarity']:.3f}{pixels}")
    if not r["near_duplicate"]:
        return f"near-duplicate: no (closest: {pair})"
    if r["label_conflict"]:
        return (f"near-duplicate: yes, of {pair}; LABEL CONFLICT: the test label is "
                f"{class_name(r['label'])}, the training label {class_name(r['train_label'])}")
    return f"near-duplicate: yes, of {pair}; the labels agree"


def neighbours_table(rows) -> str:
    """Neighbour rows (`rank`, `train_index`, `train_label`, `similarity`) as a terminal table."""
    from cifar_mtl.labels import class_names

    shown = rows.assign(label_name=class_names(rows["train_label"].to_numpy()))
    headers = {"rank": "rank", "train_index": "training image", "label_name": "label", "similarity": "similarity"}
    return format_table(shown, headers, formats={"similarity": lambda v: f"{float(v):.4f}"})


def _slices(run_id: str) -> int:
    """`slices --run ID`: one line per error slice, largest first, unclustered last."""
    from cifar_mtl.evidence import files
    from cifar_mtl.evidence.slices import slice_summary
    from cifar_mtl.runs import load_predictions

    folder = _evidence_folder(run_id)
    try:
        members = files.read_slices(folder)
    except files.EvidenceError as exc:
        raise UsageError(str(exc)) from None
    try:  # with embeddings the examples are the members nearest each slice's centre
        embeddings = files.read_embeddings(folder)
    except files.EvidenceError:
        embeddings = None
    summary = slice_summary(members, load_predictions(run_id), embeddings)
    if summary.empty:
        print(f"run {run_id} has no misclassified images, so no slices")
        return EXIT_OK
    print(slices_table(summary))
    return EXIT_OK


def slices_table(summary) -> str:
    """`evidence.slices.slice_summary` as a terminal table under a one-line count."""
    from cifar_mtl.evidence.files import NOISE_SLICE
    from cifar_mtl.evidence.slices import ARROW

    clustered = summary[summary["slice"] != NOISE_SLICE]
    left = int(summary.loc[summary["slice"] == NOISE_SLICE, "size"].sum())
    title = (f"{int(summary['size'].sum()):,} errors in {len(clustered)} slices"
             + (f" ({left} left unclustered)" if left else "") + ":")
    shown = summary.assign(
        slice=[("unclustered" if s == NOISE_SLICE else str(s)) for s in summary["slice"]],
        # ASCII: a terminal or pipe without UTF-8 must not turn the table into a traceback
        top_pairs=summary["top_pairs"].str.replace(ARROW, "->"),
        examples=[" ".join(map(str, e[:5])) for e in summary["examples"]],
    )
    headers = {"slice": "slice", "size": "size", "top_pairs": "top true->predicted pairs",
               "top_pair_share": "top pair", "mean_confidence": "confidence", "examples": "examples"}
    return title + "\n" + format_table(shown, headers, formats={
        "top_pair_share": lambda v: f"{float(v):.0%}", "mean_confidence": lambda v: f"{float(v):.2f}"},
        widths={"top_pairs": 60})


# --- terminal tables -------------------------------------------------------------------


def is_missing(value) -> bool:
    """None, NaN, pd.NA or NaT (False for anything that is not a single value)."""
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def cell_text(value) -> str:
    """A value as terminal text: missing as "-", whole floats as integers, runs of whitespace as one space."""
    if is_missing(value):
        return MISSING
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return " ".join(str(value).split())


def clip(text: str, width: int | None) -> str:
    """`text` cut to `width` characters, ending in an ellipsis when cut."""
    if width is None or len(text) <= width:
        return text
    return text[: max(width - len(ELLIPSIS), 0)] + ELLIPSIS


def short_time(value) -> str:
    """An ISO time (the database's `now()`, or `runs.now_iso()`) as 'YYYY-mm-dd HH:MM'
    (other text unchanged, missing "-")."""
    from cifar_mtl.stores.database import short_time as stored_time

    if is_missing(value):
        return MISSING
    return stored_time(str(value)) or cell_text(value)


def percent(value) -> str:
    return f"{float(value):.2%}"


def format_table(df, headers: dict[str, str], formats: dict | None = None, widths: dict | None = None) -> str:
    """The `headers` columns of `df` as aligned plain text, one header line then one line per row.

    Args:
        headers: column -> header text, in display order.
        formats: column -> function(value) -> str for present values (missing ones show "-").
        widths: column -> most characters; longer cells end in an ellipsis.

    Columns holding only numbers are right-aligned, others left-aligned.
    """
    formats, widths = formats or {}, widths or {}
    columns = []
    for col, head in headers.items():
        values = list(df[col])
        fmt = formats.get(col, cell_text)
        cells = [MISSING if is_missing(v) else clip(fmt(v), widths.get(col)) for v in values]
        present = [v for v in values if not is_missing(v)]
        numeric = bool(present) and all(isinstance(v, numbers.Number) and not isinstance(v, bool)
                                        for v in present)
        width = max([len(head), *map(len, cells)])
        align = str.rjust if numeric else str.ljust
        columns.append([align(head, width)] + [align(c, width) for c in cells])
    return "\n".join("  ".join(row).rstrip() for row in zip(*columns))


def runs_table(df) -> str:
    """`list_runs()` as a terminal table: accuracy in percent, missing values as "-", problems cut short."""
    headers = {"run_id": "run", "state": "state", "variant": "variant", "label_smoothing": "smoothing",
               "epochs": "epochs", "accuracy": "accuracy", "cross_group_errors": "cross-group errors",
               "started_at": "started", "problem": "problem"}
    return format_table(df, headers, formats={"accuracy": percent, "started_at": short_time},
                        widths={"run_id": 40, "problem": 60})


def mislabels_table(ranked, rows: int = MISLABEL_ROWS) -> str:
    """The top `rows` of a mislabel ranking (with its `rank` column) as a terminal table."""
    if ranked.empty:
        return "no images to rank"
    top = ranked.head(rows)
    headers = {"rank": "rank", "index": "image", "label_name": "given label",
               "suggested_name": "suggested label", "quality": "label quality"}
    title = f"Most suspect labels ({len(top)} of {len(ranked):,}, lowest label quality first):"
    return title + "\n" + format_table(top, headers, formats={"quality": lambda v: f"{float(v):.4f}"})


# --- workers and the team database ------------------------------------------------------


def _verdicts(args) -> int:
    """`verdicts import|list`: review mislabel suspects without the app (cifar_mtl.verdicts)."""
    from cifar_mtl.labels import CLASS_NAMES
    from cifar_mtl.stores.database import default_target
    from cifar_mtl.stores.reviews import ReviewStore

    if args.verdicts_command == "import":
        from cifar_mtl import verdicts

        check_runs_exist([args.run])
        labels = verdicts.run_labels(args.run, args.split)
        table = verdicts.read_verdicts(args.file, labels)
        if table.empty:
            print(f"no verdicts in {args.file}: fill its 'verdict' column (confirmed, rejected or unsure) on the "
                  "rows you judged, then import it again", file=sys.stderr)
            return EXIT_FAILED
        with ReviewStore(default_target()) as store:
            counts = verdicts.record_verdicts(store, args.run, table, args.reviewer, args.split, labels)
        by_kind = table["verdict"].value_counts()
        kinds = ", ".join(f"{by_kind[k]} {k}" for k in ("confirmed", "rejected", "unsure") if k in by_kind)
        print(f"{counts['saved']} verdict(s) saved for {args.reviewer} on {args.split} images of {args.run} ({kinds}); "
              f"{counts['unchanged']} already given")
        if args.split == "train":
            print(f"build a label set from them with: python -m cifar_mtl labels build --name NAME --run {args.run}")
        return EXIT_OK
    if args.run:
        check_runs_exist([args.run])
    target = _existing_review_target()
    if target is None:
        df = None
    else:
        with ReviewStore(target) as store:
            df = store.current_mislabels(run_id=args.run, reviewer=args.reviewer, split=args.split)
    if df is None or df.empty:
        print(f"no {args.split} verdicts yet" + (f" on {args.run}" if args.run else ""))
        return EXIT_OK
    df = df.sort_values("at", ascending=False)
    df["label_name"] = [MISSING if is_missing(v) else CLASS_NAMES[int(v)] for v in df["suggested_label"]]
    headers = {"index": "image", "reviewer": "reviewer", "verdict": "verdict", "label_name": "label",
               "run_id": "run", "at": "at"}
    print(format_table(df, headers, formats={"at": short_time}, widths={"run_id": 40}))
    return EXIT_OK


def _labels(args) -> int:
    """`labels build|list|show|export`: label sets of training-label corrections (cifar_mtl.labelsets)."""
    from cifar_mtl import labelsets

    if args.labels_command == "build":
        table, version, path = labelsets.build_from_reviews(
            args.name, reviewers=args.reviewer, min_agree=args.min_agree, run_ids=args.run, built_by=args.by)
        c = labelsets.counts(table)
        print(f"label set {args.name}@v{version}: {c['relabel']} relabelled, {c['exclude']} excluded -> {path}")
        print(f"train on it with: python -m cifar_mtl train --config FILE --set labels={args.name}@v{version}")
        return EXIT_OK
    if args.labels_command == "list":
        df = labelsets.list_label_sets()
        if not len(df):
            print(f"no label sets yet under {labelsets.labelsets_root()}; "
                  "`python -m cifar_mtl labels build --name NAME` builds one from the training-image verdicts")
            return EXIT_OK
        headers = {k: k.replace("_", " ") for k in labelsets.LIST_COLUMNS}
        print(format_table(df, headers, formats={"built_at": short_time}, widths={"source_runs": 40, "rule": 40}))
        return EXIT_OK
    if args.labels_command == "show":
        table = labelsets.load_label_set(args.spec)
        m, c = table.attrs["manifest"], labelsets.counts(table)
        print(f"label set {table.attrs['name']}@v{table.attrs['version']}: {c['relabel']} relabelled, "
              f"{c['exclude']} excluded; built by {m.get('built_by', '?')} at {m.get('built_at', '?')} from "
              f"{', '.join(m.get('source_runs') or []) or '?'} ({labelsets.rule_text(m.get('rule') or {})})")
        print(labelsets.to_csv(table.head(args.rows)).rstrip("\n"))
        if len(table) > args.rows:
            print(f"... {len(table) - args.rows} more rows (labels export {args.spec} --out FILE)")
        return EXIT_OK
    from pathlib import Path

    out = Path(args.out)
    if not out.parent.is_dir():
        raise UsageError(f"--out {args.out}: the folder {out.parent} does not exist")
    text = labelsets.label_set_csv(args.spec)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10)) - 1} rows to {out}")
    return EXIT_OK


def _worker(args) -> int:
    """`worker`: claim and run jobs until SIGTERM / Ctrl-C (or --max-jobs, --exit-when-idle)."""
    from cifar_mtl.worker import Worker

    worker = Worker(args.home, name=args.name, poll=args.poll, heartbeat=args.heartbeat, grace=args.grace,
                    python=args.python)
    return worker.run(max_jobs=args.max_jobs, exit_when_idle=args.exit_when_idle)


def _db_copy(args) -> int:
    """`db copy --to URL`: the SQLite database into an empty PostgreSQL one, counts per table."""
    from pathlib import Path

    from cifar_mtl.stores.copy import copy_sqlite_to_postgres
    from cifar_mtl.stores.database import default_path

    source = Path(args.source) if args.source else default_path(args.home)
    counts = copy_sqlite_to_postgres(source, args.to)
    width = max(len(t) for t in counts)
    print(f"copied {source} into {counts.target}:")
    for table, n in counts.items():
        print(f"  {table:<{width}}  {n:>9,}")
    return EXIT_OK


# --- jobs -----------------------------------------------------------------------------


def _seconds(text: str) -> float:
    """argparse type: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, 0 or more, got {text}")
    return value


def _jobs_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cifar-mtl jobs", description="Retrain jobs: submit, list, show, cancel, logs.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="artifacts home (default: $CIFAR_MTL_HOME, else artifacts/)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", parents=[common], help="queue a training run; prints the job id")
    s.add_argument("--config", required=True, help="a JSON configuration file, or a shipped config by name (cpu_fast, cpu_quick, ...)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    s.add_argument("--run-id", help="run folder name (default: <name>-<date>-<random>)")
    s.add_argument("--max-concurrent", type=int, default=1, help="workers allowed at once (default 1)")
    s.add_argument("--crossval", type=int, metavar="K",
                   help="queue a K-fold cross-validation run (`crossval`) instead of a training run")
    sub.add_parser("list", parents=[common], help="table of jobs, newest first")
    for name, text in (("show", "state, progress, error and log tail of a job"), ("logs", "the job's train.log"),
                       ("cancel", "stop a job (SIGTERM, then SIGKILL after --grace s)"),
                       ("resume", "queue a cancelled or failed cross-validation job again; it goes on "
                                  "from its first unfinished fold"),
                       ("wait", "wait for a job to end; exit 0 succeeded, 1 failed, 130 cancelled")):
        c = sub.add_parser(name, parents=[common], help=text)
        c.add_argument("id", type=int, help="job id (see `jobs list`)")
        if name == "logs":
            c.add_argument("--lines", type=int, default=200)
        if name == "cancel":
            c.add_argument("--grace", type=_seconds, default=10.0, help="seconds between SIGTERM and SIGKILL")
        if name == "wait":
            c.add_argument("--timeout", type=_seconds, default=None, help="give up after this many seconds (exit 1)")
    v = sub.add_parser("_supervise", parents=[common])
    v.add_argument("--max-concurrent", type=int, default=1)
    v.add_argument("--python", default=sys.executable)
    return p


def jobs_main(argv: list[str]) -> int:
    """`python -m cifar_mtl jobs ...`. Exit codes: 0 ok, 1 failed, 2 bad arguments or config.

    Every failure is one `error:` line on stderr, never a traceback.
    """
    from cifar_mtl.stores.database import EngineError, SchemaError, default_path

    try:
        args = _jobs_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage
        return EXIT_USAGE if exc.code else EXIT_OK
    db_path = default_path(_home_of(args)).resolve()
    try:
        return _jobs_dispatch(args)
    except SchemaError as exc:  # the database file cannot be used (JobStoreError is one)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (UserError, ValueError) as exc:  # a bad config, job id or run id
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as exc:  # e.g. locked for longer than the busy timeout
        print(f"error: the job database {db_path} cannot be used right now ({exc}); try again, "
              "and if it persists check the file and its folder", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        raise  # the reader went away, not the home: main() ends quietly
    except OSError as exc:  # e.g. a home that cannot be created or written
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; check that the artifacts home "
              f"{db_path.parent} is a folder you can write to, or pass --home", file=sys.stderr)
        return EXIT_FAILED


def _home_of(args):
    from cifar_mtl.runs import home

    return home(args.home).resolve()


def _jobs_dispatch(args) -> int:
    from cifar_mtl.jobs import JobError, JobRunner
    from cifar_mtl.stores.database import database_exists, default_path

    if args.command == "_supervise":
        return JobRunner(args.home, args.max_concurrent, args.python).supervise()
    if args.command == "submit":
        return _jobs_submit(args)
    db_path = default_path(_home_of(args))
    if not database_exists(db_path):  # reading must not create a home or a database
        if args.command == "list":
            print(f"no jobs yet: there is no job database at {db_path}; "
                  "`python -m cifar_mtl jobs submit --config FILE` queues one")
            return EXIT_OK
        raise JobError(f"no job {args.id}: there is no job database at {db_path}; "
                       "check --home / CIFAR_MTL_HOME, or queue one with `python -m cifar_mtl jobs submit`")
    runner = JobRunner(args.home)
    if args.command == "list":
        df = runner.list_jobs()
        print(jobs_table(df) if len(df) else f"no jobs in {runner.db_path}")
        return EXIT_OK
    if args.command == "logs":
        text = runner.logs(args.id, args.lines)
        print(text if text else f"job {args.id} has no log yet ({runner.get(args.id, log_lines=0)['state']})")
        return EXIT_OK
    if args.command == "show":
        print(format_job(runner.get(args.id)))
        return EXIT_OK
    if args.command == "resume":
        print(f"job {args.id}: {runner.resume(args.id)} (resumes at its first unfinished fold)")
        return EXIT_OK
    if args.command == "cancel":
        state = runner.cancel(args.id, args.grace)
        print(f"job {args.id}: {state}")
        return EXIT_OK if state == "cancelled" else EXIT_FAILED
    return _jobs_wait(runner, args.id, args.timeout)


def _jobs_submit(args) -> int:
    """Queue a job and say what was queued and how to follow it."""
    import shlex

    from cifar_mtl.config import load_config_file
    from cifar_mtl.jobs import JobRunner

    runner = JobRunner(args.home, max_concurrent=args.max_concurrent)
    config = load_config_file(args.config, args.set)
    if args.crossval is not None:
        job_id = runner.submit_crossval(config, args.crossval, args.run_id)
    else:
        job_id = runner.submit(config, args.run_id)
    run_id = runner.get(job_id, refresh=False, log_lines=0)["run_id"]
    home_arg = f" --home {shlex.quote(args.home)}" if args.home else ""
    what = f"{args.crossval}-fold cross-validation run" if args.crossval is not None else "run"
    print(f"job {job_id} queued: {what} {run_id} from {args.config}"
          + (f" with {', '.join(args.set)}" if args.set else ""))
    print("follow it with:")
    for command in ("show", "logs", "wait"):
        print(f"  python -m cifar_mtl jobs {command} {job_id}{home_arg}")
    return EXIT_OK


def jobs_table(df) -> str:
    """`JobRunner.list_jobs()` as a terminal table: whole-number ids and pids, short times,
    missing values as "-", errors cut short."""
    headers = {"id": "job", "run_id": "run", "state": "state", "created_at": "queued",
               "started_at": "started", "finished_at": "finished", "pid": "pid", "error": "error"}
    times = dict.fromkeys(("created_at", "started_at", "finished_at"), short_time)
    return format_table(df, headers, formats=times, widths={"run_id": 40, "error": 60})


def _jobs_wait(runner, job_id: int, timeout: float | None) -> int:
    from cifar_mtl.jobs import FINAL_STATES

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = runner.get(job_id, log_lines=0)
        if job["state"] in FINAL_STATES:
            print(f"job {job_id}: {job['state']}" + (f": {job['error']}" if job["error"] else ""))
            return {"succeeded": EXIT_OK, "cancelled": EXIT_CANCELLED}.get(job["state"], EXIT_FAILED)
        if deadline is not None and time.monotonic() > deadline:
            print(f"job {job_id}: still {job['state']} after {timeout:g} s", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(1.0)


def format_job(job: dict) -> str:
    """Text for `jobs show`: the row, progress, latest metrics, error and log tail."""
    from cifar_mtl.jobs import progress_summary

    lines = [f"job {job['id']}: {job['state']}  run {job['run_id']}"]
    for key in ("created_at", "started_at", "finished_at", "pid", "exit_code"):
        if job.get(key) is not None:
            lines.append(f"  {key}: {job[key]}")
    if job["state"] == "running":
        lines.append(f"  progress: {progress_summary(job['progress'])}")
    metrics = (job.get("progress") or {}).get("metrics") or {}
    if metrics:
        lines.append("  metrics: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    if job.get("error"):
        lines.append(f"  error: {job['error']}")
    if job.get("log_tail"):
        lines += ["  log:", *("    " + ln for ln in job["log_tail"].splitlines())]
    return "\n".join(lines)
