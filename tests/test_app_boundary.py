"""The app never loads TensorFlow: starting it and drawing every page leaves `tensorflow` and
`keras` unimported, so the app starts in seconds and runs where TensorFlow is not installed."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.app_fixture import APP, build_home

PAGES = ("overview", "errors", "review", "mislabels", "compare", "export", "retrain", "getting_started")

SCRIPT = f"""
import sys
from streamlit.testing.v1 import AppTest

at = AppTest.from_file({str(APP)!r}, default_timeout=120)
at.query_params["reviewer"] = "ada"
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
    fx = build_home(tmp_path, n=200)
    env = {**os.environ, **fx.env(), "PYTHONPATH": str(APP.parent)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=APP.parent, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "LOADED []" in done.stdout
