"""The web app: its pages, and the server that serves them.

``server`` gives what ``streamlit run`` serves besides Streamlit's own routes (the read-only live
routes of ``webapp`` and the access gate of ``gate``); ``session`` is each browser session's script run: the
navigation and the chosen page. ``PAGES`` is the one list of pages: the navigation, the tests and the
docs take it from here. Both entry scripts (``dashboard.py`` at the top of a source checkout, and the
packaged ``cifar_app/web/dashboard.py`` that ``cifar-app serve`` runs) are these two calls.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cifar_app.store.runstore import default_store
from cifar_app.web.nodelay import listeners_without_delay

PAGES_DIR = Path(__file__).resolve().parent / "pages"
# The server's settings, as ``.streamlit/config.toml`` gives them to ``streamlit run dashboard.py``
# in a checkout; ``cifar-app serve`` passes them as flags, so an installed app runs the same from any
# folder (tests/test_packaging.py checks the two agree).
SERVER_OPTIONS = {
    "server.maxUploadSize": 20,        # MB: the Classify page's limit; decoding refuses over 20 MiB
    "server.headless": True,
    "server.fileWatcherType": "none",  # no reload-on-save watcher: it cost a training run CPU
    "runner.postScriptGC": False,      # no full gc.collect() after every script run
    "browser.gatherUsageStats": False,
    "client.toolbarMode": "minimal",
}


def option_flags() -> list[str]:
    """``streamlit run``'s flags for ``SERVER_OPTIONS``."""
    return [part for key, value in SERVER_OPTIONS.items()
            for part in (f"--{key}", str(value).lower() if isinstance(value, bool) else str(value))]


def server_flags(address: str, port: int) -> list[str]:
    """``streamlit run``'s flags for ``SERVER_OPTIONS`` on ``address``:``port``."""
    return ["--server.address", address, "--server.port", str(port), *option_flags()]


@dataclass(frozen=True)
class PageSpec:
    """One page: its script in ``pages/``, its title and icon in the navigation."""

    name: str
    title: str
    icon: str
    default: bool = False
    # The elements whose code Streamlit loads on demand (a chunk in its ``static/js``: the data grid,
    # Plotly, the input widgets; not Markdown, alerts or layout) that the page's first view draws on a
    # store with runs (``draws``), or on some such stores (``may_draw``). ``preload`` asks for both
    # with the page's HTML, and runs the code of ``draws`` as the websocket opens. A page with
    # neither loads its elements' code as Streamlit does.
    draws: tuple[str, ...] = ()
    may_draw: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return PAGES_DIR / f"{self.name}.py"

    @property
    def preloads(self) -> tuple[str, ...]:
        """What ``preload`` asks for with the page's HTML: ``draws`` and ``may_draw``."""
        return self.draws + self.may_draw

    @property
    def route(self) -> str:
        """Its URL path under the server's base path ("" for the default page)."""
        return "" if self.default else self.name


PAGES = (
    PageSpec("home", "Runs", ":material/home:", default=True,
             draws=("DataFrame", "Multiselect", "TextInput", "Selectbox", "Button"),
             may_draw=("NumberInput",)),  # the page number, with more than a page of runs
    PageSpec("train", "Train", ":material/model_training:"),
    PageSpec("compare", "Compare", ":material/compare_arrows:",
             draws=("PlotlyChart", "DataFrame", "Multiselect"),
             may_draw=("Selectbox",)),  # the experiment, with experiments in the store
    PageSpec("experiments", "Experiments", ":material/science:",  # its form: for who may start one
             draws=("Selectbox", "Radio", "Multiselect", "DataFrame", "TextInput", "Button")),
    PageSpec("claims", "Claims", ":material/fact_check:"),
    PageSpec("inside", "Inside", ":material/stacked_line_chart:"),
    PageSpec("misclassified", "Misclassified", ":material/grid_view:"),
    PageSpec("classify", "Classify", ":material/image_search:"),
    PageSpec("model", "Model", ":material/account_tree:"),
)


def page_path(name: str) -> str:
    """The script of the page called ``name`` (for ``st.switch_page``)."""
    return str(next(p.path for p in PAGES if p.name == name))


def server() -> dict:
    """What the entry script's ``st.App(__file__, **server())`` serves besides Streamlit's own routes:
    the live routes and the access gate. (``streamlit run`` finds the app by reading the entry
    script for an ``st.App(...)`` assignment, so the script makes it.)"""
    # Imported here, once, before any session: sessions run their scripts in parallel threads, and
    # a page that draws a figure while another page's first table is still importing pandas sees
    # it half-initialized in sys.modules (plotly looks it up there): "partially initialized module
    # 'pandas' has no attribute 'Series'".
    import pandas  # noqa: F401
    import streamlit as st
    from starlette.middleware import Middleware

    from cifar_app.web import (
        access,
        charts,
        ui,  # noqa: F401  (what every page imports: the first page opens sooner)
    )
    from cifar_app.web.gate import Gate, StreamlitUploads, Uploads, held_limit
    from cifar_app.web.preload import Preload
    from cifar_app.web.webapp import routes

    charts.warm()  # a server's first figure cost its first visitor 0.1 s more than the next ones
    base, policy = st.get_option("server.baseUrlPath"), access.policy(st.get_option("server.address"))
    if policy.token_required and (problem := access.token_problem(access.server_token()[0])):
        raise SystemExit(f"error: {problem}")  # an exposed server with a guessable token: do not serve
    uploads = Uploads(StreamlitUploads(), held_limit())  # a bad $CIFAR_APP_UPLOAD_MB: do not serve
    # The first listing of a store reads every row of its index (at 10,000 runs, about half a
    # second; for a store made before the index, every run's log): started now, so that a visitor
    # who comes later finds it done (one who comes sooner waits for it, rather than doing it again).
    threading.Thread(target=_list_once, name="list-runs-once", daemon=True).start()
    if policy.token_required:  # no traceback, and so no server path, in a visitor's browser
        st.set_option("client.showErrorDetails", "none")
    return {"routes": routes(base, policy), "lifespan": _lifespan,
            "middleware": [Middleware(Gate, policy=policy, base_url_path=base,  # the outer one
                                      uploads=uploads),
                           Middleware(Preload, routes={p.route: p.preloads for p in PAGES},
                                      run={p.route: p.draws for p in PAGES}, base_url_path=base)]}


@contextlib.asynccontextmanager
async def _lifespan(app: object) -> AsyncIterator[None]:
    """The server's start (after Streamlit has bound its socket, before it accepts from it):
    Nagle's algorithm off for the connections it accepts (``nodelay``, which says which not)."""
    listeners_without_delay()
    yield


def _list_once() -> None:
    """List the server's store once (``server``), so that it remembers every run (``RunIndex``);
    then take what the server holds by now (its modules, that listing) out of the garbage
    collector's full passes, which otherwise walk all of it again in whichever page's script they
    fall (60-110 ms each at 10,000 runs on the lab's VM; 3-21 ms after). Garbage is collected first,
    so that no cycle already dead is kept; what is frozen is still freed when nothing refers to it,
    and only a cycle among it that dies later (a visitor's figure made meanwhile) outlives its use,
    once per server."""
    with contextlib.suppress(Exception):  # a store that cannot be listed is the pages' to report
        default_store().warm()
    gc.collect()
    gc.freeze()


def session() -> None:
    """A browser session's script run: the page configuration, the navigation, the chosen page."""
    import streamlit as st

    st.set_page_config(page_title="CIFAR-10 Normalization Lab", page_icon="🧪", layout="wide")
    st.navigation([st.Page(str(p.path), title=p.title, icon=p.icon, default=p.default, url_path=p.name)
                   for p in PAGES]).run()
