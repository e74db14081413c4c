"""`python -m cifar_mtl ...`: train, predict, list runs, compare two runs, export reviews, rank mislabels, run jobs.

Exit codes: 0 done, 1 failed, 2 bad arguments or configuration, 130 cancelled.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cifar_mtl", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and write a run folder")
    t.add_argument("--config", required=True, help="JSON configuration file (see configs/)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    t.add_argument("--run-id", help="run folder name (default: <name>-<date>-<random>)")
    t.add_argument("--no-progress-bar", action="store_true", help="no terminal progress bar")

    pr = sub.add_parser("predict", help="(re)write predictions.parquet and metrics.json of a run")
    pr.add_argument("--run", required=True, help="run id")

    sub.add_parser("runs", help="table of runs with state and accuracy")

    e = sub.add_parser("export", help="error-category CSV of a run's reviewed images")
    e.add_argument("--run", required=True)
    e.add_argument("--long", action="store_true", help="one row per review event")
    e.add_argument("--out", help="output file (default: <home>/exports/...)")

    m = sub.add_parser("mislabels", help="test images ranked by label quality (cleanlab)")
    m.add_argument("--run", required=True, action="append", help="run id; repeat to combine runs")
    m.add_argument("--top", type=int, help="keep the N most suspect images")
    m.add_argument("--method", default="normalized_margin", choices=["normalized_margin", "self_confidence"])
    m.add_argument("--out", help="output file (default: <home>/exports/...)")

    c = sub.add_parser("compare", help="two runs on the same test images: intervals, McNemar's exact test")
    c.add_argument("--run", required=True, action="append", help="run id: give it twice, A then B")

    j = sub.add_parser("jobs", help="retrain jobs: submit, list, show, cancel, logs", add_help=False)
    j.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return EXIT_CANCELLED


def _dispatch(args) -> int:
    from cifar_mtl.config import ConfigError
    from cifar_mtl.reviews import ReviewError, SchemaError
    from cifar_mtl.runs import RunError

    try:
        if args.command == "train":
            return _train(args)
        if args.command == "predict":
            from cifar_mtl.train import predict_run

            metrics = predict_run(args.run)
            print(f"run {args.run}: accuracy {metrics['accuracy']:.4f} on {metrics['n_test']} test images")
            return EXIT_OK
        if args.command == "runs":
            return _runs()
        if args.command == "export":
            from cifar_mtl.export import write_error_csv

            print(write_error_csv(args.run, long=args.long, out=args.out))
            return EXIT_OK
        if args.command == "mislabels":
            from cifar_mtl.export import write_mislabels_csv

            print(write_mislabels_csv(args.run, top=args.top, method=args.method, out=args.out))
            return EXIT_OK
        if args.command == "compare":
            return _compare(args.run)
        if args.command == "jobs":
            from cifar_mtl.jobs import main as jobs_main

            return jobs_main(args.rest)
    except (ConfigError, RunError, SchemaError, ReviewError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED
    raise AssertionError(f"unhandled command {args.command}")


def _train(args) -> int:
    from cifar_mtl.config import load_config_file
    from cifar_mtl.runs import new_run_id, validate_run_id
    from cifar_mtl.train import TrainingCancelled, train

    config = load_config_file(args.config, args.set)
    run_id = validate_run_id(args.run_id) if args.run_id else new_run_id(config.name)
    print(f"run {run_id}", flush=True)
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


def _compare(run_ids: list[str]) -> int:
    from cifar_mtl.compare import compare_runs, summary_text
    from cifar_mtl.runs import load_predictions

    if len(run_ids) != 2:
        print(f"error: compare takes exactly two runs (--run A --run B), got {len(run_ids)}", file=sys.stderr)
        return EXIT_USAGE
    a, b = (load_predictions(r) for r in run_ids)
    print(summary_text(compare_runs(a, b), *run_ids))
    return EXIT_OK


def _runs() -> int:
    from cifar_mtl.runs import home, list_runs

    df = list_runs()
    if df.empty:
        print(f"no runs under {home() / 'runs'}")
        return EXIT_OK
    cols = ["run_id", "state", "variant", "label_smoothing", "epochs", "accuracy", "cross_group_errors", "started_at", "problem"]
    print(df[cols].to_string(index=False))
    return EXIT_OK
