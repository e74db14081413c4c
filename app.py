"""cifar-mtl error analysis: `streamlit run app.py`.

The entry script: page setup, the shared sidebar (run under review, reviewer,
data locations) and navigation. Every page is a view in pages/.

Page addresses differ from the file names on purpose: Streamlit treats a
`pages/` folder as an old-style multipage app until `st.navigation` has run once,
and an address that matched a file name would then run that page without this
script (no sidebar, no navigation).
"""

from pathlib import Path

import pandas as pd
import streamlit as st

from cifar_mtl import runs, ui

ROOT = Path(__file__).resolve().parent

st.set_page_config(page_title="cifar-mtl error analysis", page_icon=":material/grid_view:", layout="wide")

try:
    table = ui.run_table()
except Exception as exc:  # an unreadable artifacts home must still show the Getting started page
    ui.show_error(exc, "Listing runs")
    table = pd.DataFrame(columns=runs.RUN_COLUMNS)
has_runs = bool(ui.complete_run_ids(table))

ui.sidebar(table)

start = st.Page("pages/getting_started.py", title="Getting started", icon=":material/rocket_launch:",
                url_path="start", default=not has_runs)
analyse = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", url_path="runs", default=has_runs),
    st.Page("pages/errors.py", title="Errors", icon=":material/grid_view:", url_path="browse"),
    st.Page("pages/review.py", title="Review", icon=":material/rate_review:", url_path="queue"),
    st.Page("pages/mislabels.py", title="Mislabels", icon=":material/label_off:", url_path="suspects"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:", url_path="versus"),
    st.Page("pages/export.py", title="Export", icon=":material/download:", url_path="csv"),
]
train = [start]
if (ROOT / "pages" / "retrain.py").exists():
    train.insert(0, st.Page("pages/retrain.py", title="Retrain", icon=":material/model_training:", url_path="jobs"))

st.navigation({"Analyse": analyse, "Train": train}).run()
