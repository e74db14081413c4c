"""Retrain: clone a run, change its settings, train it in the background, watch or cancel jobs.

The form (`cifar_mtl.app.retrain_form`) checks the settings on every change and shows each
problem under its field before anything is submitted. Jobs run in `cifar_mtl.jobs`'
detached workers, so they go on when this tab or the app closes; the list below
refreshes itself while one is queued or running.
"""

import streamlit as st

from cifar_mtl import jobs
from cifar_mtl.app import loaders
from cifar_mtl.app import retrain_form as field
from cifar_mtl.app.messages import escape_markdown, flash, flash_error, show_error, show_flash
from cifar_mtl.stores.database import short_time

REFRESH_S = 2.0
SHOWN_JOBS = 8
CANCEL_NOTE = "rt_cancel"


def form(runner: jobs.JobRunner, table) -> None:
    """The new-job form: source run, every setting, live problems, submit."""
    field.source_picker(table, runner.home)
    problems = field.problems_of(st.session_state, runner.home)

    model, smoothing, stages, data = st.columns(4)
    with model:
        st.markdown("**Model**")
        field.choice("variant", problems, radio=True)
        field.choice("backbone", problems)
        field.weights(problems)
        field.number("image_size", problems)
        field.choice("augment", problems)
    with smoothing:
        st.markdown("**Label smoothing and loss**")
        field.number("label_smoothing", problems)
        field.animal_head(problems)
    with stages:
        st.markdown("**Training stages**")
        for name in ("frozen_epochs", "frozen_lr", "finetune_epochs", "finetune_lr", "finetune_blocks"):
            field.number(name, problems)
    with data:
        st.markdown("**Data and run**")
        for name in ("batch_size", "train_subset", "seed"):
            field.number(name, problems)
        field.text("name", problems)
        field.label_set(problems, runner.home)
    # Opened when one of its fields has a problem: a closed expander hid the message.
    with st.expander("More settings", expanded=bool(problems.keys() & field.MORE_SETTINGS)):
        for column, names in zip(st.columns(len(field.MORE_LAYOUT)), field.MORE_LAYOUT):
            with column:
                for name in names:
                    field.widget(name, problems)
    field.submit_button(runner, problems)


# --- the job list -----------------------------------------------------------------------


def job_card(runner: jobs.JobRunner, job_id: int) -> None:
    job = runner.get(job_id, refresh=False, log_lines=30)
    state = job["state"]
    with st.container(border=True):
        by = f" · by {escape_markdown(job['submitted_by'])}" if job.get("submitted_by") else ""
        # Which machine trains it: a worker's "host:pid", or this app's own supervisor.
        on = f" · on `{job['worker']}`" if job.get("worker") else ""
        st.markdown(f"**Job {job_id}** · `{job['run_id']}` · **{state}**{by}{on} · queued {short_time(job['created_at']) or '-'} UTC")
        progress = job["progress"]
        if state == "running":
            st.progress(jobs.progress_fraction(progress), text=jobs.progress_summary(progress))
        metrics = (progress or {}).get("metrics") or {}
        if metrics:
            st.caption("Latest: " + " · ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))
        if state == "failed":
            st.error(f"Failed: {escape_markdown(job['error'], keep_code=True)}", icon=":material/error:")
        elif state == "cancelled":
            st.warning(f"Cancelled: {escape_markdown(job['error'] or 'by request', keep_code=True)}",
                       icon=":material/cancel:")
        elif state == "succeeded":
            st.success(f"Finished: run `{job['run_id']}` is in Overview and Compare.", icon=":material/check:")
        if state in ("queued", "running"):
            st.button("Cancel", key=f"{field.KEY}cancel_{job_id}", icon=":material/stop:", on_click=cancel,
                      args=(runner, job_id),
                      help="SIGTERM: the trainer stops after the current step; SIGKILL if it has not stopped in 10 s")
        if job["log_tail"]:
            with st.expander("Log (last lines)"):
                st.code(job["log_tail"], language="text")


def cancel(runner: jobs.JobRunner, job_id: int) -> None:
    """Button callback: stop the job (waits up to the grace period); the outcome shows above the list."""
    try:
        flash(CANCEL_NOTE, f"Job {job_id}: {runner.cancel(job_id)}.", "info")
    except Exception as exc:
        flash_error(CANCEL_NOTE, exc, f"Job {job_id} could not be cancelled")


def job_list(runner: jobs.JobRunner, was_active: bool) -> None:
    """Jobs, newest first; the active ones and the latest finished ones as cards."""
    try:
        table = runner.list_jobs()
    except Exception as exc:
        show_error(exc, "Reading the job queue")
        return
    active = bool(table["state"].isin(["queued", "running"]).any())
    if was_active and not active:
        st.rerun()  # a job ended: a full rerun stops the timer and lists the new run
    show_flash(CANCEL_NOTE)
    if table.empty:
        st.caption("No jobs yet: the form above queues one.")
        return
    for job_id in table["id"].head(SHOWN_JOBS):
        try:
            job_card(runner, int(job_id))
        except Exception as exc:  # one unreadable job must not hide the others
            show_error(exc, f"Job {job_id}")
    if len(table) > SHOWN_JOBS:
        with st.expander(f"All {len(table)} jobs"):
            st.dataframe(table, hide_index=True, width="stretch")


# --- page -------------------------------------------------------------------------------

st.title("Retrain")
st.caption("Clone a run, change what you want to test, and train it. Jobs run in the background "
           "and keep running when this tab or the app closes.")
try:
    runner = jobs.JobRunner()
    run_table = loaders.run_table()
except Exception as exc:
    show_error(exc, "The job runner is not available")
    st.stop()

st.subheader("New job")
try:
    form(runner, run_table)
except Exception as exc:
    show_error(exc, "The form")

st.subheader("Jobs")
try:
    busy = bool(runner.list_jobs(refresh=False)["state"].isin(["queued", "running"]).any())
except Exception:  # job_list shows the problem
    busy = False
st.fragment(job_list, run_every=REFRESH_S if busy else None)(runner, busy)
