"""Retrain: clone a run, change its settings, train it in the background, watch or cancel jobs.

The form checks the settings with `config.make_config` on every change and shows each
problem under its field before anything is submitted. Jobs run in `cifar_mtl.jobs`'
detached workers, so they go on when this tab or the app closes; the list below
refreshes itself while one is queued or running.
"""

import pandas as pd
import streamlit as st

from cifar_mtl import jobs, runs, ui
from cifar_mtl.config import AUGMENTATIONS, BACKBONES, FIELDS, OPTIMIZERS, POOLINGS, TTA_MODES, VARIANTS

KEY = "rt_"  # prefix of this page's widget keys
DEFAULTS = "(defaults)"
WEIGHT_CHOICES = ("none", "imagenet", "local file")
REFRESH_S = 2.0
SHOWN_JOBS = 8

# field -> (label, kind, help); kind "int" / "float" / "lr" fixes the number widget's step and format.
NUMBERS = {
    "label_smoothing": ("Class head eps", "float", "True class gets 1 - eps, every other class eps / 9. 0 turns it off."),
    "animal_label_smoothing": ("Animal head eps", "float", "Targets 1 - eps and eps for the animal/vehicle head."),
    "animal_loss_weight": ("Animal loss weight", "float", "Weight of the animal head's loss next to the class loss."),
    "frozen_epochs": ("Frozen-backbone epochs", "int", "Stage 1: heads only. Skipped when weights are 'none'."),
    "frozen_lr": ("Frozen-stage learning rate", "lr", None),
    "finetune_epochs": ("Fine-tuning epochs", "int", "Stage 2: the whole backbone (or its top blocks)."),
    "finetune_lr": ("Fine-tuning learning rate", "lr", None),
    "finetune_blocks": ("Fine-tuned top blocks (0 = all)", "int", None),
    "batch_size": ("Batch size", "int", None),
    "image_size": ("Image size (pixels)", "int", "The 32x32 images are resized to this side; at least 32."),
    "train_subset": ("Training images (0 = all)", "int", "A stratified subset, for quick runs."),
    "val_split": ("Validation share", "float", "Held out from the training set, stratified."),
    "seed": ("Seed", "int", None),
    "dropout": ("Dropout", "float", None),
    "weight_decay": ("Weight decay", "lr", None),
    "warmup_epochs": ("Warmup epochs", "float", None),
    "progress_interval": ("Progress every (s)", "float", None),
    "resnet_width": ("ResNet-9 width", "int", "resnet9 only: channels of its first stage."),
    "momentum": ("SGD momentum", "float", "Nesterov momentum; used when the optimizer is sgd."),
}
ZERO_MEANS_NONE = ("finetune_blocks", "train_subset")
STEPS = {"int": (1, "%d"), "float": (0.01, "%.3f"), "lr": (1e-4, "%.1e")}


# --- the form's values ------------------------------------------------------------------


def load_source(runner_home, source: str) -> None:
    """Fill the form's session keys from `source`'s config.json (or the defaults)."""
    try:
        values = jobs.clone_values(None if source == DEFAULTS else source, runner_home)
    except Exception as exc:  # an unreadable config: say so and start from the defaults
        ui.show_error(exc, f"Run {source}")
        values = jobs.clone_values(None)
    for field, value in values.items():
        if field in ZERO_MEANS_NONE and value is None:
            value = 0
        if field in NUMBERS and NUMBERS[field][1] != "int" and value is not None:
            value = float(value)
        st.session_state[KEY + field] = value
    st.session_state[KEY + "animal_same"] = values["animal_label_smoothing"] is None
    if values["animal_label_smoothing"] is None:
        st.session_state[KEY + "animal_label_smoothing"] = float(values["label_smoothing"])
    weights = values["weights"]
    st.session_state[KEY + "weights"] = weights if weights in WEIGHT_CHOICES[:2] else "local file"
    st.session_state[KEY + "weights_path"] = "" if weights in WEIGHT_CHOICES[:2] else weights
    st.session_state[KEY + "data_dir"] = values["data_dir"] or ""
    st.session_state[KEY + "run_id"] = ""
    st.session_state[KEY + "loaded_from"] = source


def form_values() -> dict:
    """The TrainConfig values the form holds now (blank/0 fields mapped to None).

    Fields without a widget keep the value the source run had.
    """
    s = st.session_state
    values = {f: s[KEY + f] for f in FIELDS if KEY + f in s}
    for field in NUMBERS:
        values[field] = s[KEY + field]
    for field in ZERO_MEANS_NONE:
        values[field] = values[field] or None
    if s[KEY + "animal_same"]:
        values["animal_label_smoothing"] = None
    values["weights"] = s[KEY + "weights_path"].strip() if s[KEY + "weights"] == "local file" else s[KEY + "weights"]
    values["data_dir"] = s[KEY + "data_dir"].strip() or None
    return values


def run_id_problem(home) -> str | None:
    run_id = st.session_state[KEY + "run_id"].strip()
    if not run_id:
        return None
    try:
        if runs.run_dir(run_id, home).exists():
            return f"run {run_id!r} already exists; choose another id or leave it empty"
    except ValueError as exc:
        return str(exc)
    return None


# --- widgets ----------------------------------------------------------------------------


def number(field: str, problems: dict, disabled: bool = False) -> None:
    label, kind, help_text = NUMBERS[field]
    step, fmt = STEPS[kind]
    st.number_input(label, key=KEY + field, step=step, format=fmt, help=help_text, disabled=disabled)
    problem_note(field, problems)


def problem_note(field: str, problems: dict) -> None:
    if field in problems:
        st.error(f"{field}: {ui.escape_markdown(problems[field], keep_code=True)}", icon=":material/error:")


def choice(field: str, label: str, options, problems: dict, **kwargs) -> None:
    if st.session_state.get(KEY + field) not in options:
        st.session_state[KEY + field] = options[0]
    st.selectbox(label, options, key=KEY + field, **kwargs)
    problem_note(field, problems)


def form(runner: jobs.JobRunner, table: pd.DataFrame) -> None:
    """The new-job form: source run, every setting, live problems, submit."""
    ids = table["run_id"].tolist()
    under_review = st.session_state.get(ui.RUN_KEY)
    ui.keep_valid(KEY + "source", [DEFAULTS, *ids], under_review if under_review in ids else DEFAULTS)
    source = st.selectbox("Start from (clone and change)", [DEFAULTS, *ids], key=KEY + "source",
                          format_func=lambda r: r if r == DEFAULTS else ui.run_label(table)(r),
                          help="The form is filled from this run's config.json; change what you like.")
    if st.session_state.get(KEY + "loaded_from") != source:
        load_source(runner.home, source)
    problems = jobs.config_problems(form_values())
    if problem := run_id_problem(runner.home):
        problems["run_id"] = problem

    model, smoothing, stages, data = st.columns(4)
    with model:
        st.markdown("**Model**")
        st.radio("Variant", VARIANTS, key=KEY + "variant", horizontal=True,
                 help="multitask adds the animal/vehicle head")
        problem_note("variant", problems)
        choice("backbone", "Backbone", BACKBONES, problems,
               help="efficientnetv2b1 is the method's; resnet9 and airbench are small nets for CPUs "
                    "(configs/cpu_fast.json: airbench reaches 91% in about 35 minutes on 2 cores)")
        choice("weights", "Weights", WEIGHT_CHOICES, problems)
        if st.session_state[KEY + "weights"] == "local file":
            st.text_input("Weights file", key=KEY + "weights_path", placeholder="/path/to/model.weights.h5")
        number("image_size", problems)
        choice("augment", "Augmentation", AUGMENTATIONS, problems)
    with smoothing:
        st.markdown("**Label smoothing and loss**")
        number("label_smoothing", problems)
        multitask = st.session_state[KEY + "variant"] == "multitask"
        st.checkbox("Animal head: same eps as the class head", key=KEY + "animal_same", disabled=not multitask)
        number("animal_label_smoothing", problems, disabled=st.session_state[KEY + "animal_same"] or not multitask)
        number("animal_loss_weight", problems, disabled=not multitask)
    with stages:
        st.markdown("**Training stages**")
        for field in ("frozen_epochs", "frozen_lr", "finetune_epochs", "finetune_lr", "finetune_blocks"):
            number(field, problems)
    with data:
        st.markdown("**Data and run**")
        for field in ("batch_size", "train_subset", "seed"):
            number(field, problems)
        st.text_input("Run name", key=KEY + "name", help="Prefix of the new run's id")
        problem_note("name", problems)
    with st.expander("More settings"):
        left, middle, right = st.columns(3)
        with left:
            st.text_input("Data folder (empty: $CIFAR10_DIR or the keras download)", key=KEY + "data_dir")
            problem_note("data_dir", problems)
            number("val_split", problems)
        with middle:
            choice("optimizer", "Optimizer", OPTIMIZERS, problems)
            for field in ("momentum", "dropout", "weight_decay", "warmup_epochs", "resnet_width"):
                number(field, problems)
        with right:
            choice("pooling", "Pooling", POOLINGS, problems)
            choice("mixed_precision", "Mixed precision", ("auto", "on", "off"), problems)
            choice("tta", "Test-time augmentation", TTA_MODES, problems)
            number("progress_interval", problems)
            st.text_input("Run id (empty: name-date-random)", key=KEY + "run_id")
            problem_note("run_id", problems)
    if "" in problems:
        st.error(ui.escape_markdown(problems[""], keep_code=True), icon=":material/error:")
    if problems:
        st.caption(f"Fix the {len(problems)} problem(s) marked above to submit.")
    st.button("Train", key=KEY + "submit", type="primary", icon=":material/play_arrow:",
              disabled=bool(problems), on_click=submit, args=(runner,))
    if note := st.session_state.pop(KEY + "note", None):
        (st.success if note[0] == "ok" else st.error)(ui.escape_markdown(note[1], keep_code=True))


def submit(runner: jobs.JobRunner) -> None:
    """Button callback: queue the form's settings as a job; the outcome shows under the button."""
    try:
        run_id = st.session_state[KEY + "run_id"].strip() or None
        job_id = runner.submit(form_values(), run_id, submitted_by=ui.reviewer())
        job = runner.get(job_id, refresh=False, log_lines=0)
        st.session_state[KEY + "note"] = ("ok", f"Job {job_id} queued: run `{job['run_id']}`.")
        st.session_state[KEY + "run_id"] = ""
    except Exception as exc:
        st.session_state[KEY + "note"] = ("error", ui.error_message(exc, "The job was not queued"))


# --- the job list -----------------------------------------------------------------------


def job_card(runner: jobs.JobRunner, job_id: int) -> None:
    job = runner.get(job_id, refresh=False, log_lines=30)
    state = job["state"]
    with st.container(border=True):
        by = f" · by {ui.escape_markdown(job['submitted_by'])}" if job.get("submitted_by") else ""
        st.markdown(f"**Job {job_id}** · `{job['run_id']}` · **{state}**{by} · queued {job['created_at']}")
        progress = job["progress"]
        if state == "running":
            st.progress(jobs.progress_fraction(progress), text=jobs.progress_summary(progress))
        metrics = (progress or {}).get("metrics") or {}
        if metrics:
            st.caption("Latest: " + " · ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))
        if state == "failed":
            st.error(f"Failed: {ui.escape_markdown(job['error'], keep_code=True)}", icon=":material/error:")
        elif state == "cancelled":
            st.warning(f"Cancelled: {ui.escape_markdown(job['error'] or 'by request', keep_code=True)}",
                       icon=":material/cancel:")
        elif state == "succeeded":
            st.success(f"Finished: run `{job['run_id']}` is in Overview and Compare.", icon=":material/check:")
        if state in ("queued", "running"):
            st.button("Cancel", key=f"{KEY}cancel_{job_id}", icon=":material/stop:", on_click=cancel, args=(runner, job_id),
                      help="SIGTERM: the trainer stops after the current step; SIGKILL if it has not stopped in 10 s")
        if job["log_tail"]:
            with st.expander("Log (last lines)"):
                st.code(job["log_tail"], language="text")


def cancel(runner: jobs.JobRunner, job_id: int) -> None:
    """Button callback: stop the job (waits up to the grace period); the outcome shows above the list."""
    try:
        note = f"Job {job_id}: {runner.cancel(job_id)}."
    except Exception as exc:
        note = ui.error_message(exc, f"Job {job_id} could not be cancelled")
    st.session_state[KEY + "cancel_note"] = note


def job_list(runner: jobs.JobRunner, was_active: bool) -> None:
    """Jobs, newest first; the active ones and the latest finished ones as cards."""
    try:
        table = runner.list_jobs()
    except Exception as exc:
        ui.show_error(exc, "Reading the job queue")
        return
    active = bool(table["state"].isin(["queued", "running"]).any())
    if was_active and not active:
        st.rerun()  # a job ended: a full rerun stops the timer and lists the new run
    if note := st.session_state.pop(KEY + "cancel_note", None):
        st.info(ui.escape_markdown(note, keep_code=True), icon=":material/info:")
    if table.empty:
        st.caption("No jobs yet: the form above queues one.")
        return
    for job_id in table["id"].head(SHOWN_JOBS):
        try:
            job_card(runner, int(job_id))
        except Exception as exc:  # one unreadable job must not hide the others
            ui.show_error(exc, f"Job {job_id}")
    if len(table) > SHOWN_JOBS:
        with st.expander(f"All {len(table)} jobs"):
            st.dataframe(table, hide_index=True, width="stretch")


# --- page -------------------------------------------------------------------------------

st.title("Retrain")
st.caption("Clone a run, change what you want to test, and train it. Jobs run in the background "
           "and keep running when this tab or the app closes.")
try:
    runner = jobs.JobRunner()
    run_table = ui.run_table()
except Exception as exc:
    ui.show_error(exc, "The job runner is not available")
    st.stop()

st.subheader("New job")
try:
    form(runner, run_table)
except Exception as exc:
    ui.show_error(exc, "The form")

st.subheader("Jobs")
try:
    busy = bool(runner.list_jobs(refresh=False)["state"].isin(["queued", "running"]).any())
except Exception:  # job_list shows the problem
    busy = False
st.fragment(job_list, run_every=REFRESH_S if busy else None)(runner, busy)
