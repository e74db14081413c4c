"""The app never loads TensorFlow: starting it and drawing every page (evidence included: it is
read from the run folder) leaves `tensorflow` and `keras` unimported, so the app starts in
seconds and runs where TensorFlow is not installed."""

from __future__ import annotations

import os
import subprocess
import sys

from cifar_mtl.cifar10 import load_cifar10
from cifar_mtl.runs import load_predictions, run_dir
from cifar_mtl.stores.database import default_path
from cifar_mtl.stores.reviews import ReviewStore
from tests.app_fixture import APP, NAVIGATION, build_home
from tests.evidence_fixture import tag_like_a_reviewer, write_evidence

PAGES = ("overview", "errors", "review", "map", "slices", "mislabels", "compare", "export", "retrain",
         "getting_started")

SCRIPT = f"""
import sys
from streamlit.testing.v1 import AppTest

at = AppTest.from_file({str(NAVIGATION)!r}, default_timeout=120)
at.query_params["reviewer"] = "ada"
at.query_params["run_id"] = "multi-b"
at.run()
assert not at.exception, [e.value for e in at.exception]
for page in {PAGES!r}:
    at.switch_page(f"views/{{page}}.py").run()
    assert not at.exception, (page, [e.value for e in at.exception])
    assert at.title, page
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print("LOADED", loaded[:5])
sys.exit(1 if loaded else 0)
"""


def test_starting_the_app_and_drawing_every_page_never_imports_tensorflow(tmp_path):
    # With evidence files and enough tags for suggestions, so that the pages read every
    # evidence file and fit the suggestions classifier: all of it without TensorFlow.
    fx = build_home(tmp_path, n=200)
    preds = load_predictions("multi-b", fx.home)
    write_evidence(run_dir("multi-b", fx.home), preds, load_cifar10(str(fx.data), allow_download=False).y_train)
    with ReviewStore(default_path(fx.home)) as store:
        tag_like_a_reviewer(store, "multi-b", preds, 40, "ada")
    env = {**os.environ, **fx.env(), "PYTHONPATH": str(APP.parent)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=APP.parent, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "LOADED []" in done.stdout
