"""Hostile values from files and the page address never reach markdown as markdown, and the
server's own settings keep it to this machine and keep tracebacks out of the browser."""

from __future__ import annotations

import re
import tomllib

import pytest
from streamlit.testing.v1 import AppTest

from cifar_mtl.app.messages import escape_markdown
from cifar_mtl.jobs import JobRunner
from cifar_mtl.runs import STATUS_FILE, atomic_write_json, run_dir
from tests.app_fixture import APP, NAVIGATION

TIMEOUT = 60
IMAGE = "![x](http://127.0.0.2:9/p.png)"  # an image would make every viewer's browser fetch this


def markdown_bodies(at: AppTest) -> list[str]:
    """The markdown source of every text element the page drew."""
    bodies = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success"):
        bodies += [str(e.value) for e in getattr(at, kind)]
    return bodies


def assert_no_live_markup(at: AppTest) -> None:
    bodies = markdown_bodies(at)
    assert not [b for b in bodies if "![x](" in b or "](http" in b], bodies
    assert any(escape_markdown(IMAGE) in b for b in bodies), "the hostile text is not shown at all"


def open_page(page: str, **query) -> AppTest:
    at = AppTest.from_file(str(NAVIGATION), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("text", [IMAGE, "[link](http://127.0.0.2:9/)", "<img src=x>", ":red[x] $x$ `c`"])
def test_escaped_text_renders_as_typed(text):
    escaped = escape_markdown(text)
    # No markdown or HTML character is left without a backslash in front of it.
    assert not re.search(r"(?<!\\)[\[\]()<>!`$:*_]", escaped), escaped
    # Every special character is escaped, so removing the escapes gives the text back.
    assert escaped.replace("\\", "") == text.replace("\\", "")


def test_a_run_status_error_in_the_sidebar(fx):
    folder = run_dir("single-a", fx.home)
    atomic_write_json(folder / STATUS_FILE, {"state": "failed", "error": f"boom {IMAGE}"})
    (folder / "metrics.json").unlink()  # a failed run: listed with its problem
    at = open_page("overview")
    assert_no_live_markup(at)


def test_the_reviewer_from_the_address(fx):
    at = open_page("review", reviewer=IMAGE, run_id="multi-b")
    assert_no_live_markup(at)


@pytest.mark.parametrize("page", ["map", "slices", "errors"])
def test_the_reviewer_from_the_address_on_the_evidence_pages(fx, page):
    from cifar_mtl.cifar10 import load_cifar10
    from cifar_mtl.runs import load_predictions
    from tests.evidence_fixture import write_evidence

    write_evidence(run_dir("multi-b", fx.home), load_predictions("multi-b", fx.home),
                   load_cifar10(str(fx.data), allow_download=False).y_train)
    at = open_page(page, reviewer=IMAGE, run_id="multi-b")
    bodies = markdown_bodies(at) + [str(h.value) for h in at.subheader]
    assert not [b for b in bodies if "![x](" in b or "](http" in b], bodies
    if page == "map":  # the map's caption names whose categories it shows
        assert any(escape_markdown(IMAGE) in b for b in bodies), bodies


def test_a_jobs_submitter_and_error_on_the_retrain_page(fx):
    runner = JobRunner(fx.home, autostart=False)
    job_id = runner.submit({"finetune_epochs": 1}, run_id="hostile", submitted_by=IMAGE)
    runner._update(job_id, "queued", state="failed", error=f"worker said {IMAGE}")
    at = open_page("retrain")
    bodies = markdown_bodies(at)
    assert not [b for b in bodies if "![x](" in b], bodies
    assert sum(escape_markdown(IMAGE) in b for b in bodies) >= 2, bodies  # the name and the error


def test_the_server_listens_on_loopback_and_shows_no_tracebacks():
    settings = tomllib.loads((APP.parent / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["address"] == "127.0.0.1"
    assert settings["client"]["showErrorDetails"] in ("type", "none")


def test_a_run_id_in_the_address_with_no_complete_run_is_not_rendered(tmp_path, monkeypatch):
    from tests.app_fixture import break_run

    home = tmp_path / "home"
    break_run(home, "training-d", "partial")  # a run folder, but nothing complete to review
    monkeypatch.setenv("CIFAR_MTL_HOME", str(home))
    at = open_page("overview", run_id=IMAGE)
    bodies = markdown_bodies(at) + [str(h.value) for h in at.subheader]
    assert not [b for b in bodies if "![x](" in b], bodies


def test_an_unreadable_runs_folder_still_shows_getting_started(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "runs").write_text("not a folder")  # listing it fails
    monkeypatch.setenv("CIFAR_MTL_HOME", str(home))
    at = AppTest.from_file(str(NAVIGATION), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Getting started"]
