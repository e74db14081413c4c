"""Label sets: named, versioned corrections of the training labels, built from verdicts.

A label set is a table with one row per training image it changes:

    index        training index (0..49999)
    action       "relabel" (train on `label` instead) or "exclude" (leave the image out)
    label        the new class (0..9) of a relabel; missing for an exclusion
    given_label  the training label the set was built against (missing when unknown)
    reviewers    who decided the row, ';'-joined ("auto:<method>" for `from_ranking`)
    decided_at   when: the latest of the deciding verdicts (UTC, ISO 8601)

How a verdict on a training image votes (`vote_of`):

- "confirmed" with a suggested label L: relabel to L (a confirmed verdict always names L:
  the review store refuses one without);
- "unsure": exclude. The reviewer could not tell the class, so neither the given label
  nor a guess is worth training on; this is how a reviewer says "drop this image"
  (cleanlab's own default for label issues is to prune them, too);
- "rejected": keep the given label (a vote against any change). A confirmed verdict whose
  suggested label is the given label (knowable only with `given_labels`) is a keep too.

Agreement: among the chosen reviewers' votes on one image, the most frequent vote
(action and label) wins if at least `min_agree` reviewers cast it and no other vote
was cast as often (a tie decides nothing); a winning keep adds no row. So
`min_agree=1` takes a lone reviewer's verdict, and `min_agree=2` with three reviewers
means "at least 2 of 3 agree on the same action and label".

Storage: `<home>/labelsets/<name>/v<N>.csv` (the table plus the class names, sorted by
index: readable and diffable) beside `v<N>.json` (the manifest: source runs, rule,
counts, who built it and when). Each build is a new version; nothing is ever
overwritten (a version is claimed by hard-linking its CSV into place, which fails if
another builder got there first). With `CIFAR_MTL_DB` set, each version is also a row
of the team database (`stores.labelsets`), which allocates the version numbers, so a
team that does not share one artifacts folder sees the same sets; a version found only
in the database is read from there.

Everything here takes and returns plain tables, for the command line and the app alike.
"""

from __future__ import annotations

import getpass
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cifar_mtl.errors import UserError
from cifar_mtl.labels import CLASS_NAMES, NUM_CLASSES

LABELSET_COLUMNS = ["index", "action", "label", "given_label", "reviewers", "decided_at"]
LIST_COLUMNS = ["name", "version", "rows", "relabel", "exclude", "built_by", "built_at", "source_runs", "rule"]
ACTIONS = ("relabel", "exclude")
LABELSETS_DIR = "labelsets"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
SPEC_PATTERN = re.compile(r"(?P<name>[^@]*)(?:@v(?P<version>\d{1,9}))?")
N_TRAIN = 50_000
LIST_HINT = "`python -m cifar_mtl labels list` lists the label sets"


class LabelSetError(UserError):
    """A label set is unknown, badly named, empty, damaged or does not fit the data."""


# --- building --------------------------------------------------------------------------


def vote_of(verdict: pd.Series, suggested: pd.Series, given: pd.Series | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each verdict's vote: (action: "relabel"/"exclude"/"keep", label: int, -1 unless relabel).

    Args:
        verdict: (V,) "confirmed", "rejected" or "unsure".
        suggested: (V,) nullable suggested labels.
        given: (V,) the images' given labels, or None when unknown.
    """
    verdict = np.asarray(verdict, dtype=object)
    label = pd.array(suggested, dtype="Int64").fillna(-1).to_numpy(np.int64)
    relabel = (verdict == "confirmed") & (label >= 0)
    if given is not None:
        relabel &= label != np.asarray(given, dtype=np.int64)
    action = np.where(relabel, "relabel", np.where(verdict == "unsure", "exclude", "keep"))
    return action, np.where(relabel, label, -1)


def build_label_set(
    verdicts: pd.DataFrame, reviewers=None, min_agree: int = 1, given_labels: np.ndarray | None = None,
) -> pd.DataFrame:
    """Resolve train-split verdicts into label-set rows by the agreement rule (module docstring).

    Args:
        verdicts: `ReviewStore.current_mislabels(split="train")`: DataFrame[index, reviewer,
            verdict, suggested_label, run_id, at].
        reviewers: names whose verdicts count (None: everyone's).
        min_agree: how many reviewers must cast the winning vote (>= 1).
        given_labels: (50000,) the training labels, to fill `given_label` and to count a
            "relabel" to the given label as a keep; None leaves `given_label` missing.

    Returns:
        DataFrame with `LABELSET_COLUMNS`, one row per changed image, sorted by index.
    """
    if not isinstance(min_agree, (int, np.integer)) or isinstance(min_agree, bool) or min_agree < 1:
        raise LabelSetError(f"min_agree must be a whole number of at least 1, got {min_agree!r}")
    v = verdicts
    if reviewers is not None:
        reviewers = [reviewers] if isinstance(reviewers, str) else list(reviewers)
        unknown = sorted(set(reviewers) - set(v["reviewer"]))
        if unknown:
            raise LabelSetError(f"no training-image verdicts by {', '.join(map(repr, unknown))}; reviewers with "
                                f"verdicts: {', '.join(sorted(set(v['reviewer']))) or 'none'}")
        v = v[v["reviewer"].isin(reviewers)]
    if not len(v):
        return _empty()
    index = v["index"].to_numpy(np.int64)
    if given_labels is not None:
        given_labels = np.asarray(given_labels, dtype=np.int64)
        if index.max() >= len(given_labels):
            raise LabelSetError(f"verdict on training image {index.max()} but only {len(given_labels)} given labels")
    given = None if given_labels is None else given_labels[index]
    action, label = vote_of(v["verdict"], v["suggested_label"], given)
    votes = pd.DataFrame({
        "index": index, "action": action, "label": label, "reviewer": v["reviewer"].to_numpy(),
        "at": pd.to_datetime(v["at"], utc=True).to_numpy(),
    })
    groups = votes.groupby(["index", "action", "label"], sort=False)
    counted = groups["reviewer"].agg(["size", lambda s: ";".join(sorted(s))])
    counted.columns = ["n", "reviewers"]
    counted["decided_at"] = groups["at"].max()
    counted = counted.reset_index().sort_values(["index", "n"], ascending=[True, False], kind="stable")
    first = ~counted["index"].duplicated()
    # The runner-up's count per image: a tie with the winner decides nothing.
    runner_up = counted[~first].groupby("index")["n"].max()
    won = counted[first].copy()
    won["second"] = won["index"].map(runner_up).fillna(0).to_numpy()
    won = won[(won["n"] >= min_agree) & (won["n"] > won["second"]) & (won["action"] != "keep")]
    return _rows(
        won["index"].to_numpy(), won["action"].to_numpy(), won["label"].to_numpy(),
        None if given_labels is None else given_labels[won["index"].to_numpy()],
        won["reviewers"].to_numpy(), pd.to_datetime(won["decided_at"], utc=True),
    )


def from_ranking(ranking: pd.DataFrame, top_n: int, method: str = "normalized_margin",
                 action: str = "relabel") -> pd.DataFrame:
    """An automatic label set from the `top_n` most suspect training images (standing in
    for reviewers, e.g. in the noise benchmark): relabel each to the class the model
    suggests, or exclude each from training (a wrong suspect then costs one image
    instead of adding a wrong label).

    Args:
        ranking: `mislabels.rank_train_mislabels` output (most suspect first): index, label, suggested.
        top_n: how many of the top rows to take; to relabel, rows whose suggestion is their label are skipped.
        action: "relabel" or "exclude".

    Returns:
        DataFrame with `LABELSET_COLUMNS`, reviewers "auto:<method>".
    """
    if not isinstance(top_n, (int, np.integer)) or isinstance(top_n, bool) or top_n < 1:
        raise LabelSetError(f"top_n must be a whole number of at least 1, got {top_n!r}")
    if action not in ("relabel", "exclude"):
        raise LabelSetError(f"action must be 'relabel' or 'exclude', got {action!r}")
    top = ranking.head(int(top_n))
    if action == "relabel":
        top = top[top["suggested"].to_numpy() != top["label"].to_numpy()]
    n = len(top)
    stamp = pd.Timestamp.now(tz="UTC")
    label = top["suggested"].to_numpy() if action == "relabel" else np.full(n, -1)
    return _rows(top["index"].to_numpy(), np.full(n, action), label,
                 top["label"].to_numpy(), np.full(n, f"auto:{method}"), pd.DatetimeIndex([stamp] * n))


def _rows(index, action, label, given, reviewers, decided_at) -> pd.DataFrame:
    n = len(index)
    given = np.full(n, -1, np.int64) if given is None else np.asarray(given, dtype=np.int64)
    table = pd.DataFrame({
        "index": np.asarray(index, dtype=np.int64),
        "action": np.asarray(action, dtype=object),
        "label": _nullable(label),
        "given_label": _nullable(given),  # -1: unknown
        "reviewers": np.asarray(reviewers, dtype=object),
        "decided_at": pd.DatetimeIndex(decided_at, tz="UTC") if n else pd.DatetimeIndex([], tz="UTC"),
    })
    return table.sort_values("index", kind="stable").reset_index(drop=True)


def _nullable(values) -> pd.arrays.IntegerArray:
    """Int64 with -1 (no class) as missing."""
    values = np.asarray(values, dtype=np.int64)
    return pd.arrays.IntegerArray(values, values < 0)


def _empty() -> pd.DataFrame:
    return _rows([], [], [], None, [], [])


def counts(table: pd.DataFrame) -> dict:
    """{"rows", "relabel", "exclude"} of a label set."""
    return {"rows": int(len(table)), "relabel": int((table["action"] == "relabel").sum()),
            "exclude": int((table["action"] == "exclude").sum())}


def class_text(label) -> str:
    """"3 cat" for a class number; "" for a missing or unknown (-1) class."""
    return "" if pd.isna(label) or int(label) < 0 else f"{int(label)} {CLASS_NAMES[int(label)]}"


def preview_table(table: pd.DataFrame) -> pd.DataFrame:
    """A label set's rows as a reader wants them: class names beside the numbers, reviewers
    comma-separated. DataFrame[training image, action, given label, new label, reviewers,
    decided at (UTC)]."""
    return pd.DataFrame({
        "training image": table["index"], "action": table["action"],
        "given label": table["given_label"].map(class_text), "new label": table["label"].map(class_text),
        "reviewers": table["reviewers"].str.replace(";", ", "), "decided at (UTC)": table["decided_at"],
    })


# --- applying ----------------------------------------------------------------------------


def apply_label_set(labels: np.ndarray, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The training labels with a label set applied.

    Args:
        labels: (N,) training labels 0..9 (never the test set's).
        table: a label set (`LABELSET_COLUMNS`).

    Returns:
        (new_labels (N,) int64, excluded (N,) bool). Raises LabelSetError when a row's
        index is beyond the data or its `given_label` is not the data's label (the set was
        built on other data, e.g. another noisy copy).
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    excluded = np.zeros(len(labels), dtype=bool)
    if not len(table):
        return labels, excluded
    index = table["index"].to_numpy(np.int64)
    if index.max() >= len(labels):
        raise LabelSetError(f"the label set names training image {index.max()}, beyond the {len(labels)} "
                            "training images of this data; build it from verdicts on this data")
    given = table["given_label"]
    known = given.notna().to_numpy()
    clash = known & (given.fillna(-1).to_numpy(np.int64) != labels[index])
    if clash.any():
        i = int(index[clash][0])
        raise LabelSetError(
            f"the label set was built against other training labels: image {i} has label {labels[i]} here but "
            f"{int(given[clash].iloc[0])} in the set ({int(clash.sum())} such rows); use it with the data it "
            "was built on (data_dir), or build a new set"
        )
    relabel = (table["action"] == "relabel").to_numpy()
    labels[index[relabel]] = table["label"][relabel].to_numpy(np.int64)
    excluded[index[~relabel]] = True
    return labels, excluded


# --- names and files ----------------------------------------------------------------------


def check_name(name) -> str:
    """A label set's name: 1-64 letters, digits, '_' or '-', starting with a letter or digit."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise LabelSetError(f"label set name {name!r} must be 1-64 letters, digits, '_' or '-' "
                            "(no '/', '.', '@' or spaces), starting with a letter or digit")
    return name


def name_problem(name: str) -> str | None:
    """What is wrong with `name` as a label set name (empty, or not `NAME_PATTERN`), None if nothing."""
    if not name:
        return "Give the set a name, e.g. relabels-round1."
    try:
        check_name(name)
    except LabelSetError as exc:
        return str(exc)
    return None


def parse_spec(spec) -> tuple[str, int | None]:
    """"NAME" -> (NAME, None), "NAME@vK" -> (NAME, K)."""
    match = SPEC_PATTERN.fullmatch(spec) if isinstance(spec, str) else None
    if match is None:
        raise LabelSetError(f"label set {spec!r}: give NAME (its latest version) or NAME@vK, e.g. relabels@v2")
    version = match["version"]
    if version is not None and int(version) < 1:
        raise LabelSetError(f"label set {spec!r}: versions start at v1")
    return check_name(match["name"]), None if version is None else int(version)


def labelsets_root(home_dir=None) -> Path:
    from cifar_mtl.runs import home

    return home(home_dir) / LABELSETS_DIR


def _csv_path(home_dir, name: str, version: int) -> Path:
    return labelsets_root(home_dir) / name / f"v{version}.csv"


def _file_versions(home_dir, name: str) -> list[int]:
    folder = labelsets_root(home_dir) / name
    if not folder.is_dir():
        return []
    found = (re.fullmatch(r"v(\d{1,9})\.csv", p.name) for p in folder.iterdir())
    return sorted(int(m[1]) for m in found if m)


def _team_table():
    """The team database's label-set table when `CIFAR_MTL_DB` is set, else None."""
    from cifar_mtl.stores.database import team_url

    url = team_url()
    if url is None:
        return None
    from cifar_mtl.stores.labelsets import LabelSetTable

    return LabelSetTable(url)


def to_csv(table: pd.DataFrame) -> str:
    """The set as CSV text: its columns plus the class names, one row per image by index."""
    out = table.copy()
    out.insert(3, "label_name", [CLASS_NAMES[i] if pd.notna(i) else "" for i in out["label"]])
    out.insert(5, "given_name", [CLASS_NAMES[i] if pd.notna(i) else "" for i in out["given_label"]])
    out["decided_at"] = out["decided_at"].map(lambda t: t.isoformat(timespec="seconds"))
    return out.to_csv(index=False, lineterminator="\n")


def from_csv(text: str, where: str) -> pd.DataFrame:
    """Read and check a set's CSV text (`to_csv`); LabelSetError naming `where` when it is damaged."""
    try:
        raw = pd.read_csv(io.StringIO(text), dtype={"action": str, "reviewers": str},
                          keep_default_na=False, na_values={"label": [""], "given_label": [""]})
    except (ValueError, pd.errors.ParserError) as exc:
        raise LabelSetError(f"{where} is not a readable label-set CSV ({exc}); build the set again") from None
    missing = [c for c in LABELSET_COLUMNS if c not in raw.columns]
    if missing:
        raise LabelSetError(f"{where} lacks columns {missing}; build the set again")
    try:
        table = pd.DataFrame({
            "index": raw["index"].astype(np.int64),
            "action": raw["action"].astype(object),
            "label": raw["label"].astype("Int64"),
            "given_label": raw["given_label"].astype("Int64"),
            "reviewers": raw["reviewers"].astype(object),
            "decided_at": pd.to_datetime(raw["decided_at"], utc=True, format="ISO8601"),
        })
    except (ValueError, TypeError) as exc:
        raise LabelSetError(f"{where} has a badly typed value ({exc}); build the set again") from None
    problems = []
    if not table["action"].isin(ACTIONS).all():
        problems.append(f"actions other than {ACTIONS}")
    relabel = table["action"] == "relabel"
    if table.loc[relabel, "label"].isna().any() or not table.loc[relabel, "label"].between(0, NUM_CLASSES - 1).all():
        problems.append("a relabel without a class 0..9")
    if not table["index"].between(0, N_TRAIN - 1).all() or table["index"].duplicated().any():
        problems.append("indices outside 0..49999 or repeated")
    if problems:
        raise LabelSetError(f"{where} is damaged ({'; '.join(problems)}); build the set again")
    return table


def save_label_set(
    table: pd.DataFrame, name: str, home_dir=None, *, source_runs=(), rule: dict | None = None,
    built_by: str | None = None,
) -> tuple[int, Path]:
    """Save `table` as the next version of `name`; return (version, CSV path).

    Raises LabelSetError for a bad name or an empty table (an empty set changes nothing).
    """
    name = check_name(name)
    if not len(table):
        raise LabelSetError(f"label set {name!r} would be empty: no image has a confirmed relabel or exclusion "
                            "under this rule; nothing was saved")
    text = to_csv(table)
    built_by = built_by or _user()
    from cifar_mtl.stores.database import now

    manifest = {"name": name, "source_runs": sorted(set(source_runs)), "rule": rule or {},
                "counts": counts(table), "built_by": built_by, "built_at": now()}
    team = _team_table()
    try:
        version = _claim_version(name, home_dir, text, manifest, team)
    finally:
        if team is not None:
            team.close()
    manifest["version"] = version
    from cifar_mtl.runs import atomic_write_json

    atomic_write_json(_csv_path(home_dir, name, version).with_suffix(".json"), manifest)
    return version, _csv_path(home_dir, name, version)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return f"uid {os.getuid()}"


def _claim_version(name: str, home_dir, text: str, manifest: dict, team) -> int:
    """Claim the next free version in the database (if any) and the folder; write the CSV."""
    from cifar_mtl.stores.labelsets import VersionTaken

    folder = labelsets_root(home_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".build-{os.getpid()}-{os.urandom(4).hex()}.csv"
    tmp.write_text(text, encoding="utf-8")
    try:
        version = max([0, *_file_versions(home_dir, name)]) + 1
        if team is not None:
            version = max(version, team.latest_version(name) + 1)
        for _ in range(1000):
            try:
                if team is not None:
                    team.add(name, version, json.dumps({**manifest, "version": version}), text,
                             manifest["built_by"])
                os.link(tmp, folder / f"v{version}.csv")  # fails if the file exists: never overwrite
                return version
            except (VersionTaken, FileExistsError):
                version += 1
        raise LabelSetError(f"could not claim a version of label set {name!r} under {folder}")
    finally:
        tmp.unlink(missing_ok=True)


# --- listing and loading --------------------------------------------------------------------


def list_label_sets(home_dir=None) -> pd.DataFrame:
    """Every version of every label set, in the folder and (with CIFAR_MTL_DB) the team
    database: DataFrame[`LIST_COLUMNS`], by name and version."""
    found: dict[tuple[str, int], dict] = {}
    root = labelsets_root(home_dir)
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and NAME_PATTERN.fullmatch(p.name)):
            for version in _file_versions(home_dir, folder.name):
                found[(folder.name, version)] = _read_manifest(folder / f"v{version}.json")
    team = _team_table()
    if team is not None:
        try:
            for row in team.versions():
                found.setdefault((row["name"], int(row["version"])), _parse_manifest(row["manifest"]))
        finally:
            team.close()
    rows = []
    for (name, version), m in sorted(found.items()):
        c = m.get("counts") or {}
        rows.append({"name": name, "version": version, "rows": c.get("rows"), "relabel": c.get("relabel"),
                     "exclude": c.get("exclude"), "built_by": m.get("built_by"), "built_at": m.get("built_at"),
                     "source_runs": ",".join(m.get("source_runs") or []), "rule": rule_text(m.get("rule") or {})})
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def _read_manifest(path: Path) -> dict:
    try:
        return _parse_manifest(path.read_text(encoding="utf-8"))
    except OSError:
        return {}


def _parse_manifest(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def rule_text(rule: dict) -> str:
    if "from_ranking" in rule:
        return f"top {rule['from_ranking']} of the ranking"
    who = rule.get("reviewers") or "all"
    who = who if isinstance(who, str) else ",".join(who)
    return f"min_agree {rule.get('min_agree', 1)} of {who}"


def resolve_version(spec: str, home_dir=None) -> tuple[str, int]:
    """(name, version) of "NAME" (its latest version) or "NAME@vK"; LabelSetError when unknown."""
    name, version = parse_spec(spec)
    known = set(_file_versions(home_dir, name))
    team = _team_table()
    if team is not None:
        try:
            known |= {int(r["version"]) for r in team.versions() if r["name"] == name}
        finally:
            team.close()
    if not known:
        raise LabelSetError(f"no label set named {name!r} under {labelsets_root(home_dir)}; {LIST_HINT}")
    if version is None:
        return name, max(known)
    if version not in known:
        raise LabelSetError(f"label set {name!r} has no version v{version} (it has "
                            f"{', '.join(f'v{v}' for v in sorted(known))})")
    return name, version


def load_label_set(spec: str, home_dir=None) -> pd.DataFrame:
    """The rows of label set "NAME" (latest version) or "NAME@vK".

    Returns:
        DataFrame[`LABELSET_COLUMNS`]; `attrs` holds name, version and manifest.
    """
    name, version = resolve_version(spec, home_dir)
    path = _csv_path(home_dir, name, version)
    if path.is_file():
        table = from_csv(path.read_text(encoding="utf-8"), str(path))
        manifest = _read_manifest(path.with_suffix(".json"))
    else:  # recorded by a teammate whose artifacts folder is not this one
        team = _team_table()
        try:
            row = team.get(name, version)
        finally:
            team.close()
        table = from_csv(row["rows_csv"], f"label set {name}@v{version} in {team.where}")
        manifest = _parse_manifest(row["manifest"])
    table.attrs.update(name=name, version=version, manifest=manifest)
    return table


def label_set_csv(spec: str, home_dir=None) -> str:
    """The CSV text of a label set version, as saved (for `labels export`)."""
    table = load_label_set(spec, home_dir)
    return to_csv(table)


def build_from_reviews(
    name: str, home_dir=None, *, reviewers=None, min_agree: int = 1, run_ids=None, built_by: str | None = None,
) -> tuple[pd.DataFrame, int, Path]:
    """Build and save the next version of `name` from the review store's train-split verdicts.

    `run_ids` keeps the verdicts recorded while reviewing those cross-validation runs
    (None: all). The given labels come from the first source run's train_predictions.

    Returns:
        (table, version, CSV path).
    """
    from cifar_mtl.stores.database import default_target
    from cifar_mtl.stores.reviews import ReviewStore

    name = check_name(name)
    store = ReviewStore(default_target(home_dir))
    try:
        verdicts = store.current_mislabels(split="train")
    finally:
        store.close()
    if run_ids:
        verdicts = verdicts[verdicts["run_id"].isin(list(run_ids))]
    if not len(verdicts):
        where = f" on runs {', '.join(run_ids)}" if run_ids else ""
        raise LabelSetError(f"there are no verdicts on training images{where} to build label set {name!r} from; "
                            "review training suspects first (Mislabels, split train)")
    sources = sorted(set(verdicts["run_id"]))
    table = build_label_set(verdicts, reviewers, min_agree, given_labels=_given_labels(sources, home_dir))
    rule = {"reviewers": sorted(reviewers) if reviewers else "all", "min_agree": int(min_agree),
            "relabel": "confirmed with a suggested label", "exclude": "unsure",
            "verdicts": int(len(verdicts)), "images_judged": int(verdicts["index"].nunique())}
    version, path = save_label_set(table, name, home_dir, source_runs=sources, rule=rule, built_by=built_by)
    return table, version, path


def _given_labels(run_ids, home_dir) -> np.ndarray | None:
    """The training labels from a source run's train_predictions.parquet (-1 where absent), or None."""
    from cifar_mtl.mislabels import TRAIN_PREDICTIONS_FILE
    from cifar_mtl.runs import run_dir

    for run_id in run_ids:
        try:
            path = run_dir(run_id, home_dir) / TRAIN_PREDICTIONS_FILE
        except ValueError:
            continue
        if path.is_file():
            table = pd.read_parquet(path, columns=["index", "label"])
            labels = np.full(N_TRAIN, -1, dtype=np.int64)
            labels[table["index"].to_numpy()] = table["label"].to_numpy()
            return labels
    return None


# --- training on a label set ----------------------------------------------------------------


def resolve_labels(config, home_dir=None):
    """`config` with its `labels` pinned to "NAME@vK" (a bare NAME: its latest version).

    Raises ConfigError naming the set and how to list sets when it is unknown.
    """
    import dataclasses

    from cifar_mtl.config import ConfigError

    if config.labels is None:
        return config
    try:
        name, version = resolve_version(config.labels, home_dir)
    except LabelSetError as exc:
        raise ConfigError([("labels", str(exc))]) from None
    return dataclasses.replace(config, labels=f"{name}@v{version}")


def apply_to_training(labels: np.ndarray, spec: str, pool: np.ndarray, home_dir=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Apply label set `spec` to the training labels for a run training on `pool`.

    Args:
        labels: (N,) the training labels as loaded (never the test set's).
        pool: training indices the run uses (training and validation).

    Returns:
        (new labels (N,), excluded (N,) bool, metrics: label_set, label_set_version,
        relabelled and excluded, counted within `pool`).
    """
    table = load_label_set(spec, home_dir)
    new, excluded = apply_label_set(labels, table)
    pool = np.asarray(pool, dtype=np.int64)
    info = {"label_set": table.attrs["name"], "label_set_version": int(table.attrs["version"]),
            "relabelled": int((new[pool] != np.asarray(labels)[pool]).sum()), "excluded": int(excluded[pool].sum())}
    return new, excluded, info
