"""cifar-mtl error analysis: `streamlit run app.py`.

The app is `navigation.py` (the sidebar and every page in views/), served through
`st.App` so that each page Streamlit sends names its server's address: a shared link
to a sub-page then opens without the frontend's search for the server, which asked
the sub-page's path first and got 404s (`cifar_mtl/app/server.py`). Like `streamlit
run` of a plain script, it opens the app in the browser unless run headless.
"""

import streamlit as st
from starlette.middleware import Middleware

from cifar_mtl.app.server import ServerAddress, open_browser

app = st.App("navigation.py", middleware=[Middleware(ServerAddress)], lifespan=open_browser)
