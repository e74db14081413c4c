"""cifar-mtl error analysis: the script Streamlit runs for every page (`app.py` serves it).

Page setup, the shared sidebar (run under review, reviewer, data locations) and
navigation. Every page is a view in views/.

The views folder is not called `pages/` on purpose: Streamlit treats a `pages/`
folder next to the entry script as an old-style multipage app on a process's first
script run, so a deep link opened first showed "Page not found" over the page.
The favicon is a local file: a Material icon as page icon makes every browser
fetch it from an outside host.
"""

from pathlib import Path

import streamlit as st

from cifar_mtl.app import loaders
from cifar_mtl.app.sidebar import sidebar

ROOT = Path(__file__).resolve().parent

st.set_page_config(page_title="cifar-mtl error analysis", page_icon=str(ROOT / "assets" / "icon.png"), layout="wide")

table = loaders.run_table()  # never raises: an unreadable home still shows Getting started
has_runs = bool(loaders.complete_run_ids(table))

sidebar(table)

start = st.Page("views/getting_started.py", title="Getting started", icon=":material/rocket_launch:",
                url_path="start")
overview = st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", url_path="runs")
analyse = [
    overview,
    st.Page("views/errors.py", title="Errors", icon=":material/grid_view:", url_path="browse"),
    st.Page("views/review.py", title="Review", icon=":material/rate_review:", url_path="queue"),
    st.Page("views/map.py", title="Map", icon=":material/scatter_plot:", url_path="map"),
    st.Page("views/slices.py", title="Slices", icon=":material/category:", url_path="slices"),
    st.Page("views/mislabels.py", title="Mislabels", icon=":material/label_off:", url_path="suspects"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare:", url_path="versus"),
    st.Page("views/export.py", title="Export", icon=":material/download:", url_path="csv"),
]
train = [st.Page("views/retrain.py", title="Retrain", icon=":material/model_training:", url_path="jobs"),
         st.Page("views/labels.py", title="Label sets", icon=":material/playlist_add_check:", url_path="labelsets"),
         start]


def home() -> None:
    """The root address: Overview when there are runs, else Getting started.

    Streamlit serves its default page at "/" whatever its url_path, so a visible default
    page could not be opened by its own address; this hidden one only sends the
    browser on, and every visible page keeps an address of its own.
    """
    st.switch_page(overview if has_runs else start, query_params=st.query_params.to_dict())


root = st.Page(home, title="cifar-mtl", url_path="home", default=True, visibility="hidden")
st.navigation({"": [root], "Analyse": analyse, "Train": train}).run()
