"""The Retrain form's model: one widget per TrainConfig field, named and explained by
`config.SETTINGS`, and the mapping between a config's values and the form's session keys.

The pure part (`form_state`, `form_values`, `run_id_problem`) maps values both ways
and can be tested without Streamlit; the widgets below draw one field each with its
problem (from `jobs.config_problems`) under it.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import streamlit as st

from cifar_mtl import jobs, labelsets, runs
from cifar_mtl.app.captions import run_label
from cifar_mtl.app.messages import escape_markdown, flash, flash_error, show_error, show_flash
from cifar_mtl.app.state import RUN_KEY, keep_valid, reviewer
from cifar_mtl.config import FIELDS, SETTINGS

KEY = "rt_"  # prefix of the form's session keys
DEFAULTS = "(defaults)"  # the source "run" that stands for TrainConfig's defaults
LOCAL_FILE = "local file"
WEIGHT_CHOICES = ("none", "imagenet", LOCAL_FILE)
ZERO_MEANS_NONE = ("finetune_blocks", "train_subset")  # None shows as 0 in a number box
STEPS = {"int": (1, "%d"), "float": (0.01, "%.3f"), "rate": (1e-4, "%.1e")}  # kind -> (step, format)
NUMBERS = tuple(f for f, s in SETTINGS.items() if s.kind in STEPS)
NOTE = "rt_submit"  # flash slot of the submit button's outcome


# --- values <-> form state (pure) -----------------------------------------------------------


def form_state(values: dict, source: str) -> dict:
    """{session key: value} that shows config `values` (every TrainConfig field) in the form."""
    state = {}
    for field, value in values.items():
        if field in ZERO_MEANS_NONE and value is None:
            value = 0
        if field in NUMBERS and SETTINGS[field].kind != "int" and value is not None:
            value = float(value)
        state[KEY + field] = value
    state[KEY + "animal_same"] = values["animal_label_smoothing"] is None
    if values["animal_label_smoothing"] is None:
        state[KEY + "animal_label_smoothing"] = float(values["label_smoothing"])
    weights = values["weights"]
    named = weights in WEIGHT_CHOICES[:2]
    state[KEY + "weights"] = weights if named else LOCAL_FILE
    state[KEY + "weights_path"] = "" if named else weights
    state[KEY + "data_dir"] = values["data_dir"] or ""
    state[KEY + "run_id"] = ""
    state[KEY + "loaded_from"] = source
    return state


def form_values(state: Mapping) -> dict:
    """The TrainConfig values the form holds now (blank/0 fields mapped to None).

    Fields without a widget keep the value the source run had.
    """
    values = {f: state[KEY + f] for f in FIELDS if KEY + f in state}
    for field in NUMBERS:
        values[field] = state[KEY + field]
    for field in ZERO_MEANS_NONE:
        values[field] = values[field] or None
    if state[KEY + "animal_same"]:
        values["animal_label_smoothing"] = None
    weights = state[KEY + "weights"]
    values["weights"] = state[KEY + "weights_path"].strip() if weights == LOCAL_FILE else weights
    values["data_dir"] = state[KEY + "data_dir"].strip() or None
    return values


def requested_run_id(state: Mapping) -> str | None:
    """The run id typed into the form, None when it is left empty."""
    return state[KEY + "run_id"].strip() or None


def run_id_problem(run_id: str | None, home) -> str | None:
    """Why `run_id` cannot name a new run under `home` (taken or malformed), None if it can."""
    if not run_id:
        return None
    try:
        if runs.run_dir(run_id, home).exists():
            return f"run {run_id!r} already exists; choose another id or leave it empty"
    except ValueError as exc:
        return str(exc)
    return None


def problems_of(state: Mapping, home) -> dict[str, str]:
    """{field: problem} of the form now ({} when it can be submitted); "" for the whole config."""
    problems = jobs.config_problems(form_values(state))
    if problem := run_id_problem(requested_run_id(state), home):
        problems["run_id"] = problem
    if "labels" not in problems and (problem := label_set_problem(state.get(KEY + "labels"), home)):
        problems["labels"] = problem
    return problems


def label_set_problem(spec: str | None, home) -> str | None:
    """Why label set `spec` cannot be trained on (unknown name or version), None if it can."""
    if not spec:
        return None
    try:
        labelsets.resolve_version(spec, home)
    except labelsets.LabelSetError as exc:
        return str(exc)
    return None


def label_set_options(home, current: str | None) -> list:
    """None (the labels as given), then "NAME@vK" of every saved label set version, newest
    version of each name first; a cloned run's `current` set is kept even when unknown here,
    so that its problem shows rather than the field silently changing."""
    options = [None, *label_set_specs(labelsets.list_label_sets(home))]
    if current and current not in options:
        options.append(current)
    return options


def label_set_specs(table: pd.DataFrame) -> list[str]:
    """"NAME@vK" of every row of `labelsets.list_label_sets`, newest version of each name first."""
    ordered = table.sort_values(["name", "version"], ascending=[True, False])
    return [f"{n}@v{int(v)}" for n, v in zip(ordered["name"], ordered["version"])]


# --- loading and submitting -------------------------------------------------------------------


def source_picker(table: pd.DataFrame, home) -> None:
    """'Start from': a run to clone (the run under review at first) or the defaults; fills the form."""
    ids = table["run_id"].tolist()
    under_review = st.session_state.get(RUN_KEY)
    keep_valid(KEY + "source", [DEFAULTS, *ids], under_review if under_review in ids else DEFAULTS)
    label = run_label(table)
    source = st.selectbox("Start from (clone and change)", [DEFAULTS, *ids], key=KEY + "source",
                          format_func=lambda r: r if r == DEFAULTS else label(r),
                          help="The form is filled from this run's config.json; change what you like.")
    if st.session_state.get(KEY + "loaded_from") != source:
        load_source(home, source)


def load_source(home, source: str) -> None:
    """Fill the form's session keys from `source`'s config.json (or the defaults)."""
    try:
        values = jobs.clone_values(None if source == DEFAULTS else source, home)
    except Exception as exc:  # an unreadable config: say so and start from the defaults
        show_error(exc, f"Run {source}")
        values = jobs.clone_values(None)
    st.session_state.update(form_state(values, source))


def submit(runner: jobs.JobRunner) -> None:
    """Button callback: queue the form's settings as a job; `show_outcome` says how it went."""
    try:
        s = st.session_state
        job_id = runner.submit(form_values(s), requested_run_id(s), submitted_by=reviewer())
        job = runner.get(job_id, refresh=False, log_lines=0)
        flash(NOTE, f"Job {job_id} queued: run `{job['run_id']}`.", "success")
        s[KEY + "run_id"] = ""
    except Exception as exc:
        flash_error(NOTE, exc, "The job was not queued")


# The form's "More settings" expander, column by column: laid out from here, and opened
# when one of its fields has a problem (a closed expander hid the message).
MORE_LAYOUT = (
    ("data_dir", "val_split"),
    ("optimizer", "momentum", "dropout", "weight_decay", "warmup_epochs", "resnet_width"),
    ("pooling", "mixed_precision", "tta", "progress_interval", "run_id"),
)
MORE_SETTINGS = frozenset(f for column in MORE_LAYOUT for f in column)


def submit_button(runner: jobs.JobRunner, problems: dict) -> None:
    """The form's problems in sum, the Train button (off while any), and the last submit's outcome."""
    if "" in problems:
        st.error(escape_markdown(problems[""], keep_code=True), icon=":material/error:")
    if problems:
        named = ", ".join(SETTINGS[k].label if k in SETTINGS else k for k in problems if k)
        st.caption(f"Fix the {len(problems)} problem(s) marked above to submit" + (f": {named}." if named else "."))
    st.button("Train", key=KEY + "submit", type="primary", icon=":material/play_arrow:",
              disabled=bool(problems), on_click=submit, args=(runner,))
    show_flash(NOTE)


# --- one widget per field ------------------------------------------------------------------------


def problem_note(field: str, problems: dict) -> None:
    """The field's problem, if any, right under its widget."""
    if field in problems:
        st.error(f"{field}: {escape_markdown(problems[field], keep_code=True)}", icon=":material/error:")


def number(field: str, problems: dict, *, disabled: bool = False) -> None:
    """A number box for `field`: label, help, step and format from its `SETTINGS` kind."""
    setting = SETTINGS[field]
    step, fmt = STEPS[setting.kind]
    st.number_input(setting.label, key=KEY + field, step=step, format=fmt, help=setting.help or None,
                    disabled=disabled)
    problem_note(field, problems)


def choice(field: str, problems: dict, options=None, *, radio: bool = False) -> None:
    """A select box (or a horizontal radio) of `field`'s choices (or `options`)."""
    setting = SETTINGS[field]
    options = tuple(options or setting.choices)
    if st.session_state.get(KEY + field) not in options:
        st.session_state[KEY + field] = options[0]
    if radio:
        st.radio(setting.label, options, key=KEY + field, horizontal=True, help=setting.help or None)
    else:
        st.selectbox(setting.label, options, key=KEY + field, help=setting.help or None)
    problem_note(field, problems)


def text(field: str, problems: dict) -> None:
    """A text box for `field`."""
    setting = SETTINGS[field]
    st.text_input(setting.label, key=KEY + field, help=setting.help or None)
    problem_note(field, problems)


def weights(problems: dict) -> None:
    """Weights: none, imagenet, or a local file (then a box for its path)."""
    choice("weights", problems, WEIGHT_CHOICES)
    if st.session_state[KEY + "weights"] == LOCAL_FILE:
        st.text_input("Weights file", key=KEY + "weights_path", placeholder="/path/to/model.weights.h5")


def animal_head(problems: dict) -> None:
    """The animal head's eps (or 'same as the class head') and loss weight; off for single-task."""
    multitask = st.session_state[KEY + "variant"] == "multitask"
    st.checkbox("Animal head: same eps as the class head", key=KEY + "animal_same", disabled=not multitask)
    number("animal_label_smoothing", problems, disabled=st.session_state[KEY + "animal_same"] or not multitask)
    number("animal_loss_weight", problems, disabled=not multitask)


def label_set(problems: dict, home) -> None:
    """The label set to retrain on: none, or one version of a saved set (Label sets page)."""
    try:
        options = label_set_options(home, st.session_state.get(KEY + "labels"))
    except Exception as exc:  # an unreadable labelsets folder or team table: the field keeps "none"
        show_error(exc, "Listing label sets")
        options = [None]
    if st.session_state.get(KEY + "labels") not in options:
        st.session_state[KEY + "labels"] = None
    st.selectbox(SETTINGS["labels"].label, options, key=KEY + "labels", help=SETTINGS["labels"].help,
                 format_func=lambda spec: "none (labels as given)" if spec is None else spec)
    problem_note("labels", problems)


def run_id_box(problems: dict) -> None:
    """The new run's id: empty for 'name-date-random'."""
    st.text_input("Run id (empty: name-date-random)", key=KEY + "run_id")
    problem_note("run_id", problems)


def widget(field: str, problems: dict) -> None:
    """The widget that fits `field` (`config.SETTINGS` kind), with its problem under it."""
    if field == "run_id":
        run_id_box(problems)
    elif SETTINGS[field].kind == "choice":
        choice(field, problems)
    elif SETTINGS[field].kind == "text":
        text(field, problems)
    else:
        number(field, problems)
