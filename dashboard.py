"""CIFAR-10 Normalization Lab — entry point: ``streamlit run dashboard.py``.

The app is ``cifar_app/web/app.py``: ``streamlit run`` imports this file to find ``app`` (the server),
and each browser session runs it as ``__main__`` (the navigation and the chosen page).
"""

import streamlit as st

from cifar_app.web import app as lab

if __name__ != "__main__":
    app = st.App(__file__, **lab.server())
else:
    lab.session()
