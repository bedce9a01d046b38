"""CIFAR-10 Normalization Lab — entry point: ``streamlit run dashboard.py``.

``streamlit run`` finds ``app`` below and serves it (Streamlit's pages plus the read-only live-view
routes of ``cifar_app.webapp``); each browser session then runs this file as ``__main__``, which
draws the navigation and the chosen page.
"""

import streamlit as st

if __name__ != "__main__":  # imported by `streamlit run` to build the server
    # Imported here, once, before any session: sessions run their scripts in parallel threads, and
    # a page that draws a figure while another page's first table is still importing pandas sees
    # it half-initialized in sys.modules (plotly looks it up there): "partially initialized module
    # 'pandas' has no attribute 'Series'".
    import pandas  # noqa: F401
    from starlette.middleware import Middleware

    from cifar_app import access
    from cifar_app.gate import Gate
    from cifar_app.webapp import routes

    _base, _policy = st.get_option("server.baseUrlPath"), access.policy(st.get_option("server.address"))
    if _policy.token_required and (_problem := access.token_problem(access.server_token()[0])):
        raise SystemExit(f"error: {_problem}")  # an exposed server with a guessable token: do not serve
    if _policy.token_required:  # no traceback, and so no server path, in a visitor's browser
        st.set_option("client.showErrorDetails", "none")
    app = st.App("dashboard.py", routes=routes(_base, _policy),
                 middleware=[Middleware(Gate, policy=_policy, base_url_path=_base)])
else:  # a session's script run
    st.set_page_config(page_title="CIFAR-10 Normalization Lab", page_icon="🧪", layout="wide")
    pages = [
        st.Page("app_pages/home.py", title="Runs", icon=":material/home:", default=True),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("app_pages/experiments.py", title="Experiments", icon=":material/science:"),
        st.Page("app_pages/claims.py", title="Claims", icon=":material/fact_check:"),
        st.Page("app_pages/inside.py", title="Inside", icon=":material/stacked_line_chart:"),
        st.Page("app_pages/misclassified.py", title="Misclassified", icon=":material/grid_view:"),
        st.Page("app_pages/classify.py", title="Classify", icon=":material/image_search:"),
        st.Page("app_pages/model.py", title="Model", icon=":material/account_tree:"),
    ]
    st.navigation(pages).run()
