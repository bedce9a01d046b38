"""Streamlit helpers shared by the pages: page setup, access control, cached resources, run pickers
and setting widgets.

Everything here is thin: it reads from the run store / data and hands results to Streamlit.
"""

from __future__ import annotations

import secrets
import sys
import threading
from collections import Counter
from collections.abc import Callable, Container, Iterable
from pathlib import Path

import numpy as np
import streamlit as st

from cifar_app.core.data import (
    CifarData,
    DataError,
    DatasetInfo,
    dataset_status,
    default_data_dir,
    load_cifar10,
)
from cifar_app.core.data import dataset_info as list_dataset
from cifar_app.core.settings import DEFAULT_RECIPE, TrainSettings, recipe_values
from cifar_app.store.run import Run, RunSummary
from cifar_app.store.runstore import RunStore, default_store
from cifar_app.web import access, webapp
from cifar_app.web.access import Action
from cifar_app.web.charts import NORM_LABELS
from cifar_app.web.tables import RUN_SORTS, RunPage, RunQuery, query_runs
from cifar_app.web.text import for_markdown as md

READ_ONLY_HELP = "Needs the access token: enter it in the sidebar."


# ---------------------------------------------------------------------------- page setup & access


def page_setup() -> None:
    """Call first on every page: the access sidebar; on a private exposed server, a visitor without
    the token sees the token prompt and nothing else (the page stops here)."""
    _access_sidebar()
    if not may(Action.VIEW):
        st.title("CIFAR-10 Normalization Lab")
        st.info(policy().describe(granted=False) + " Enter it in the sidebar, or open the link with "
                "`?token=…` that the server printed.")
        st.stop()


def _server_address() -> str | None:
    return st.get_option("server.address")


def policy() -> access.Policy:
    """This server's access policy (``cifar_app.web.access``)."""
    return access.policy(_server_address())


def token_required() -> bool:
    """Whether this server asks for the access token."""
    return policy().token_required


@st.cache_resource(show_spinner=False)
def _announce_token(address: str) -> str:
    """Make (or read) the token once per server and print where to use it, as Jupyter does."""
    token, generated = access.server_token()
    if generated:
        port = st.get_option("server.port")
        print(f"CIFAR-10 Normalization Lab is reachable beyond this machine ({address or 'all interfaces'})."
              f"\nIt needs this access token (or set ${access.TOKEN_ENV}):\n    {token}\n"
              f"or open http://<this host>:{port}/?token={token}", file=sys.stderr, flush=True)
    return token


def _granted() -> bool:
    """Whether this session gave the token (or a key) under the key version in force: revoking the
    keys (``serve --revoke-keys``) ends open sessions' access too."""
    granted = st.session_state.get("_access_granted")
    return granted is not None and granted == access.key_version()


def _grant() -> None:
    st.session_state["_access_granted"] = access.key_version()


def may(action: Action) -> bool:
    """Whether this browser session may do ``action`` (the policy is ``access.Policy.allows``)."""
    return policy().allows(action, _granted())


def may_change() -> bool:
    """True when this browser session may start, stop, delete or import."""
    return may(Action.CHANGE)


def route_key() -> str | None:
    """The live routes' key for this session (None where anyone may view)."""
    if not token_required() or not _granted():
        return None
    return access.route_key(access.server_token()[0])


def _client() -> str:
    """Who is trying tokens, for the throttle: the connection's address."""
    try:
        ip = st.context.ip_address
    except Exception:  # noqa: BLE001 - no request context
        ip = None
    if isinstance(ip, str) and ip and not access.is_loopback(ip):
        return ip
    # no address, or loopback (a proxy in front): one bucket per session, so that one visitor's
    # wrong tries never lock the others out
    return "session:" + st.session_state.setdefault("_throttle_id", secrets.token_hex(8))


def _try_token(given: str, token: str) -> str | None:
    """Check a given token, slowed per client (``access.THROTTLE``); None when accepted, else what
    to tell the visitor."""
    client = _client()
    wait = access.THROTTLE.wait_s(client)
    if wait > 0:
        return f"Too many wrong tokens from this address: try again in {wait:.0f} s."
    if access.token_matches(given, token):
        access.THROTTLE.succeeded(client)
        _grant()
        return None
    access.THROTTLE.failed(client)
    return "That is not the access token."


def _access_sidebar() -> None:
    if not token_required():
        return
    token = _announce_token(_server_address() or "")
    if not _granted() and access.key_matches(st.context.cookies.get(access.KEY_COOKIE), token):
        _grant()  # this browser gave the token before
    given = st.query_params.get("token")
    if given is not None:
        if (refused := _try_token(given, token)) is not None:
            st.session_state["_access_refused"] = refused
        del st.query_params["token"]  # keep it out of the address bar and of shared links
    with st.sidebar:
        if _granted():
            st.caption("🔓 Access token accepted: you can view and change everything.")
            if st.context.cookies.get(access.KEY_COOKIE) != route_key():
                _live_component(key="lab_key", data={  # the server sets this browser's HttpOnly cookie
                    "view": "key", "path": webapp.SESSION, **_route_data()})
            return
        st.info(policy().describe(granted=False))
        entered = st.text_input("Access token", type="password", key="_access_token_input", max_chars=512)
        if entered:
            refused = _try_token(entered, token)
            if refused is None:
                st.session_state.pop("_access_refused", None)
                st.rerun()
            st.error(refused)
        elif refused := st.session_state.pop("_access_refused", None):
            st.error(refused)


def lazy_expander(label: str, key: str, opened: bool = False):
    """An expander whose contents are made only while it is open: the container when open, else
    None (opening it re-runs the page). On the other runs of the page, what it holds costs neither
    the server nor the browser anything. ``opened``: open it the first time the page shows it."""
    if opened and key not in st.session_state:
        st.session_state[key] = True
    box = st.expander(label, key=key, on_change="rerun")
    return box if box.open else None


def action_button(label: str, key: str, action: Action = Action.CHANGE, **kwargs: object) -> bool:
    """A button for ``action``: disabled (with the reason) while this session may not do it, and
    never reported as pressed without access, whatever the client sends."""
    allowed = may(action)
    if not allowed:
        kwargs = {**kwargs, "disabled": True, "help": READ_ONLY_HELP}
    return st.button(label, key=key, **kwargs) and allowed  # type: ignore[arg-type]


def download_button(label: str, data: Callable[[], bytes | str], file_name: str, mime: str, key: str,
                    help: str | None = None, container: object = st) -> None:
    """A download of a run's file, built only when clicked (``data`` is called then, on the
    server); without access a disabled button that hands out nothing."""
    if not may(Action.DOWNLOAD):
        container.button(label, key=key, disabled=True, help=READ_ONLY_HELP)
        return
    # no rerun on a click: a rerun replaces every deferred file id on the page, and a second
    # download clicked before the new ids reach the browser would wait forever on a revoked one
    container.download_button(label, data, file_name, mime, key=key, help=help, on_click="ignore")


def server_path(path: Path | str) -> str:
    """A server folder as the page may show it: the path with access, else a placeholder."""
    return str(Path(path).resolve()) if may(Action.PATHS) else "(a folder on the server)"


# ---------------------------------------------------------------------------- store & data


def data_dir() -> Path:
    """The data folder this server uses ($CIFAR_APP_DATA or ./data)."""
    return default_data_dir()


def store() -> RunStore:
    """The run store ($CIFAR_APP_RUNS or ./runs), one per server (shared with the live routes)."""
    return default_store()


CLAIMS_TTL_S = 20  # the Claims page's verdicts are computed at most this often per store


@st.cache_data(ttl=CLAIMS_TTL_S, max_entries=8, show_spinner=False)
def _claims(root: str, reference: str | None, shipped: str | None) -> list[dict]:
    from cifar_app.lab.claims import evaluate

    return evaluate(store())


def claims() -> list[dict]:
    """``claims.evaluate`` of this store, computed once per ``CLAIMS_TTL_S`` for every visitor (it
    reads every experiment's runs: a second or more of server CPU)."""
    import os

    from cifar_app.store.results import SHIPPED_ENV

    s = store()
    return _claims(str(s.root), str(s.reference_root), os.environ.get(SHIPPED_ENV))


_DATA: dict[tuple, CifarData] = {}
_DATA_LOCK = threading.Lock()


def dataset() -> CifarData | None:
    """The dataset's test split (the pages show and evaluate on it; the training split is left
    on disk: its processes load their own), loaded once per server and folder (a progress bar while
    image folders are decoded the first time); None, with the reason in
    ``st.session_state['data_error']``, when it is not there."""
    root, key = _data_key()
    if key is None:
        return None
    if key in _DATA:
        return _DATA[key]
    with _DATA_LOCK:
        if key not in _DATA:
            bar = st.progress(0.0, text="Loading CIFAR-10 (once per server)…")

            def show(done: int, total: int) -> None:
                bar.progress(done / total, text=f"Decoding CIFAR-10 images, first load only (then "
                             f"cached): {done:,} / {total:,}")

            try:
                _DATA[key] = load_cifar10(root, progress=show, train=False)  # what pages use
            except DataError as e:
                st.session_state["data_error"] = str(e)
                return None
            finally:
                bar.empty()
    return _DATA[key]


_INFO: dict[tuple, DatasetInfo] = {}


def dataset_info() -> DatasetInfo | None:
    """The data folder's images counted and named, not loaded (no torch, no 180 MB), once per
    server and folder; None, with the reason in ``st.session_state['data_error']``, when it holds
    no dataset."""
    root, key = _data_key()
    if key is None:
        return None
    if key not in _INFO:
        try:
            _INFO[key] = list_dataset(root)
        except DataError as e:
            st.session_state["data_error"] = str(e)
            return None
    return _INFO[key]


def _data_key() -> tuple[Path, tuple | None]:
    """The data folder and what the server's memos of it are keyed by (its path and what is
    found there); key None, with the reason in ``st.session_state['data_error']``, when it holds
    no dataset."""
    root = data_dir()
    status = dataset_status(root)
    if not status["found"]:
        st.session_state["data_error"] = str(_missing_message(root))
        return root, None
    return root, (str(root), status["kind"], status["path"])


def _missing_message(root: Path) -> str:
    try:
        load_cifar10(root)
    except DataError as e:
        return str(e)
    return ""


def data_missing_hint() -> None:
    """Tell the user the test set is missing and where to fix it."""
    st.warning("The CIFAR-10 test set is not available, so this needs the dataset. "
               "See the **Runs** page to download it, or point `CIFAR_APP_DATA` at a copy.")
    if st.session_state.get("data_error") and may(Action.PATHS):  # it names server folders
        with st.expander("details"):
            st.text(st.session_state["data_error"])


# ---------------------------------------------------------------------------- runs


def run_labels(summaries: Iterable[RunSummary]) -> dict[str, str]:
    """Each run's 'label (GroupNorm, completed)' for select boxes, by id; runs whose text would be
    the same get their id after it. The text is what a select box sends back (Streamlit's
    widgets keep the formatted option), so picking one of twins chose another (a multiselect's
    first with that text, a select box's last)."""
    shown = {}
    for s in summaries:
        ref = ", reference" if s.reference else ""
        shown[s.id] = f"{s.label} ({NORM_LABELS.get(s.norm, s.norm)}, {s.status}{ref})"
    counts = Counter(shown.values())
    return {i: f"{text} · {i}" if counts[text] > 1 else text for i, text in shown.items()}


DAMAGED_NAMED = 10  # damaged runs named in a notice; the rest are counted
MAX_OPTIONS = 1000  # runs a picker offers (offered_runs): every option is sent to the browser


def reset(key: str, default: object) -> bool:
    """Set the picker ``key`` to ``default`` when Back has left the address without the link its
    page followed or wrote (``new_link``). Set, not dropped: the browser sends the value it shows
    with the rerun, and a dropped state would take it."""
    if not st.session_state.pop(f"_{key}_reset", False):
        return False
    st.session_state[key] = default
    return True


def remembered_runs(key: str, known: Container[str], default: Callable[[], list[str]]) -> list[str]:
    """What the run picker ``key`` holds, set before it is drawn: ``default()`` at first (and after
    Back, ``reset``), then the user's choice minus runs no longer ``known`` (deleted, or now left
    out)."""
    if st.session_state.get(f"_{key}_reset"):
        reset(key, default())
    elif key not in st.session_state:
        st.session_state[key] = default()
    else:
        st.session_state[key] = [i for i in st.session_state[key] if i in known]
    return st.session_state[key]


MAX_LINK_CHARS = 10_000  # of a ``?runs=`` parameter read: about 300 run ids


def _link(param: str) -> str:
    """The URL's ``?param=`` as one text (given twice, both, comma-joined), at most
    ``MAX_LINK_CHARS``."""
    return ",".join(st.query_params.get_all(param))[:MAX_LINK_CHARS]


def link_ids(param: str = "runs") -> list[str]:
    """The ids ``?param=ID,ID`` names, in order, each once (not checked against any run)."""
    return list(dict.fromkeys(i for i in _link(param).split(",") if i))


def new_link(key: str, known: Container[str], param: str = "runs", most: int | None = None,
             why: str = "") -> list[str]:
    """Set the picker ``key`` to the runs that ``?runs=ID,ID`` (``param``) in the URL names and
    that are ``known``, in its order (the first ``most``; with ``most=1``, a select box: the one
    id), when it should follow the link, and return them: the link is new to this session, or the
    picker has no state (the page was left, which drops a widget's state, and opened again by the
    same link). Otherwise none, and nothing set: a link picks once, and the user's choice after it
    stays, whatever runs come and go. Runs the link names that are not ``known`` are counted in a
    note (``why``: what the page needs of a run). A link that names none the page can show stays in
    the address until the user chooses (``write_link``): reloaded later (a run still training has
    finished), it is followed again. When the link the page followed or wrote leaves the address
    (Back, to before it), the picker goes back to its default. This is how a page reaches a run
    its picker does not offer (past ``MAX_OPTIONS``)."""
    given = _link(param)
    mark = f"_{key}_link"
    if not given:
        if st.session_state.pop(mark, None) is not None:  # the page's own link is gone from the
            st.session_state[f"_{key}_reset"] = True       # address: a step back in the history,
            st.session_state.pop(f"_{key}_chosen", None)   # to before it: the default (``reset``)
        return []
    if st.session_state.get(mark) == given and key in st.session_state:
        return []
    st.session_state[mark] = given
    asked = link_ids(param)
    named = [i for i in asked if i in known]
    if len(named) < len(asked):
        missing = len(asked) - len(named)
        st.info(f"{missing:,} of the {len(asked):,} runs in the link cannot be shown here "
                f"(gone{why}, or not a run).")
    if most is not None and len(named) > most:
        first = "the first" if most == 1 else f"the first {most}"
        st.info(f"This shows {most} at most: {first} of the link's {len(named):,} runs.")
    named = named[:most]
    if named:
        st.session_state[key] = named[0] if most == 1 else named
    else:
        st.session_state[f"_{key}_unshown"] = given  # what the picker holds is shown over it
    return named


def write_link(key: str, ids: list[str], param: str = "runs") -> None:
    """Put the picker ``key``'s choice in the address (``?param=ID,ID``; none chosen: removed), so
    the page can be bookmarked or shared, as a link ``new_link`` has followed already: the page's
    own address is not a new link over the user's next choice. While the page shows its default
    over a link that named nothing it can show (``new_link``), the link stays."""
    mark, value = f"_{key}_link", ",".join(ids)
    unshown = f"_{key}_unshown"
    if unshown in st.session_state:
        held = st.session_state[unshown]
        if isinstance(held, str) and _link(param) == held:  # the first run after the link
            st.session_state[unshown] = (held, value)
            return
        if held == (_link(param), value):  # still the default, under the same link
            return
        del st.session_state[unshown]  # the user chose, or another address
    if value:
        st.query_params[param] = st.session_state[mark] = value
    else:
        st.session_state.pop(mark, None)
        if param in st.query_params:
            del st.query_params[param]


def keep_link(key: str, chosen: list[str], param: str = "runs") -> None:
    """While the address holds a link (``?runs=``), it names the runs chosen (``write_link``), so a
    reload or a shared address shows them, not the link's first runs; a page opened without one
    keeps a plain address. An empty choice leaves it as it is."""
    if chosen and param in st.query_params:
        write_link(key, chosen, param)


def offered_runs(runs: list[RunSummary], chosen: list, hint: str = "") -> list[str]:
    """The ids a picker of ``runs`` (in listing order: newest first, then the shipped reference
    runs) offers: the first ``MAX_OPTIONS``, and beyond them the reference runs and those
    ``chosen``; a caption says so (then ``hint``) when some are left out. Every option is sent to
    the browser on every rerun."""
    if len(runs) <= MAX_OPTIONS:
        return [s.id for s in runs]
    picked = set(chosen)
    st.caption(f"The list offers the {MAX_OPTIONS:,} newest of {len(runs):,} runs{hint}.")
    beyond = [s.id for s in runs[MAX_OPTIONS:] if s.reference or s.id in picked]
    return [s.id for s in runs[:MAX_OPTIONS]] + beyond


def damaged_notice(summaries: list[RunSummary], here: str = "") -> None:
    """One warning naming the damaged runs (the first ``DAMAGED_NAMED``), their file and why (they
    are left untouched). ``here="Runs"`` on the Runs page, where they are listed, not left out."""
    bad = [s for s in summaries if s.damaged]
    if not bad:
        return
    lines = [f"- `{s.id}`: {md(access.shown(s.error, may(Action.PATHS)))}" for s in bad[:DAMAGED_NAMED]]
    if len(bad) > DAMAGED_NAMED:
        lines.append(f"- and {len(bad) - DAMAGED_NAMED:,} more")
    where = ("They are listed as damaged; delete them below if you want" if here == "Runs" else
             "They are left out here; delete them on the **Runs** page if you want")
    st.warning(f"{len(bad):,} run{'s' if len(bad) > 1 else ''} cannot be read (nothing was changed). "
               f"{where}:\n" + "\n".join(lines))


def run_filters(summaries: list[RunSummary], key: str) -> RunPage:
    """The Runs page's filters, order and page (``tables.query_runs``), as widgets; the page of
    runs they select."""
    norms = sorted({s.norm for s in summaries}, key=lambda n: (n not in NORM_LABELS, n))
    states = sorted({str(s.status) for s in summaries})
    experiments = sorted({str(e) for s in summaries if (e := s.tags.get("experiment"))}, reverse=True)
    c1, c2, c3, c4, c5 = st.columns([2, 2, 2, 2, 1])
    chosen_norms = c1.multiselect("Normalization", norms, key=f"{key}_norms",
                                  format_func=lambda n: NORM_LABELS.get(n, n), placeholder="any")
    chosen_states = c2.multiselect("State", states, key=f"{key}_states", placeholder="any")
    experiment = c3.selectbox("Experiment", [None, *experiments], key=f"{key}_exp",
                              format_func=lambda e: "any" if e is None else e) if experiments else None
    text = c4.text_input("Name contains", key=f"{key}_text", max_chars=80,
                         help="any part of the run's name, id or settings, any case")
    sort = c5.selectbox("Order", list(RUN_SORTS), key=f"{key}_sort")
    query = RunQuery(tuple(chosen_norms), tuple(chosen_states), experiment, text, sort,
                     page=int(st.session_state.get(f"{key}_page", 1) or 1))
    view = query_runs(summaries, query)
    if view.pages > 1:
        if st.session_state.get(f"{key}_page", 1) > view.pages:  # fewer pages since (a filter)
            st.session_state[f"{key}_page"] = view.pages
        st.number_input(f"Page (of {view.pages:,})", min_value=1, max_value=view.pages, step=1,
                        key=f"{key}_page")
    first = (view.page - 1) * query.size + 1
    st.caption(f"{view.matching:,} of {len(summaries):,} runs match"
               + (f"; showing {first:,}–{first + len(view.runs) - 1:,}" if view.pages > 1 else "") + ".")
    return view


def pick_run(summaries: list[RunSummary], key: str, label: str = "Run",
             link: bool = True) -> RunSummary | None:
    """A select box over runs kept in step with ``?run=ID`` in the URL: the URL picks the run
    (a link, a new run just started: ``new_link``), and the run the user picks is written back
    (``write_link``), so the page can be bookmarked or shared; ``link=False``: neither (the page
    follows its link itself). The page's own default (the newest run) is not written: each change
    of the address is a step in the browser's history, and Back would have taken two presses."""
    if not summaries:
        return None
    by_id = {s.id: s for s in summaries}
    picked = f"_{key}_chosen"  # the user picked in this picker since the page opened
    if key not in st.session_state:
        st.session_state.pop(picked, None)
    if link:
        new_link(key, by_id, param="run", most=1)
    back = st.session_state.get(f"_{key}_reset", False)
    options = offered_runs(summaries, [] if back else [st.session_state.get(key)],
                           "; open another from the Runs page's table (its *curves* link)")
    reset(key, options[0])
    chosen = st.selectbox(label, options, key=key, on_change=st.session_state.__setitem__,
                          args=(picked, True), format_func=run_labels(by_id[i] for i in options).__getitem__)
    if link and (st.session_state.get(picked) or "run" in st.query_params):
        write_link(key, [chosen], param="run")
    return by_id[chosen]


def completed_runs() -> list[RunSummary]:
    """Runs with a trained model that can be read, user runs first (newest first), then reference
    runs; damaged runs are named in a warning instead."""
    summaries = store().summaries()
    damaged_notice(summaries)
    return [s for s in summaries if s.has_model and not s.damaged]


@st.cache_resource(max_entries=32, show_spinner=False)
def _run_figure(run_path: str, reference: bool, stamp: tuple, name: str, smoothing: float):
    from cifar_app.web.live import figure

    return figure(Run(Path(run_path), reference), name, smoothing)


def run_figure(run: Run, name: str, smoothing: float = 0.9):
    """A finished run's figure (``live.figure``: the one the live view draws while it trains), built
    once per version of its log for every session of the server: when a run ends, every tab that
    watched it re-runs its page at once (a classroom: 30), and draws this one figure."""
    return _run_figure(str(run.path), run.reference, run.log_stamp(), name, smoothing)


@st.cache_resource(show_spinner="Scoring the test set…", max_entries=16)
def _evaluation(run_path: str, reference: bool, model_mtime: float, fingerprint: str):
    from cifar_app.lab.analysis import run_evaluation

    return run_evaluation(Run(Path(run_path), reference), dataset())


def evaluation(run: Run):
    """The run's test-set evaluation on the loaded data (stored predictions when they match)."""
    data = dataset()
    return _evaluation(str(run.path), run.reference, run.model_mtime(), data.test_fingerprint)


@st.cache_resource(max_entries=16, show_spinner=False)
def _loaded_model(run_path: str, reference: bool, model_mtime: float):
    from cifar_app.store.inference import load_model

    return load_model(Run(Path(run_path), reference))


def loaded_model(run: Run):
    """The run's model, loaded once per server (reloaded if its file changes)."""
    return _loaded_model(str(run.path), run.reference, run.model_mtime())


# ---------------------------------------------------------------------------- widgets


_LIVE_CSS = """
.lab-live { font-family: var(--st-font, sans-serif); color: var(--st-text-color, inherit); }
.lab-live .lab-text { font-size: 0.875rem; margin-bottom: 0.3rem; }
.lab-live .lab-bar { height: 0.5rem; border-radius: 0.25rem; overflow: hidden;
                     background: var(--st-secondary-background-color, #f0f2f6); }
.lab-live .lab-fill { height: 100%; width: 0; background: var(--st-primary-color, #ff4b4b); }
.lab-live .lab-note, .lab-live .lab-status { font-size: 0.875rem; opacity: 0.75; margin-top: 0.5rem; }
.lab-live .lab-error { color: var(--st-red-color, #d33); margin-top: 0.5rem; }
.lab-live .lab-chart { height: 480px; }
"""
_live_component = st.components.v2.component(
    "cifar_lab_live", js=(Path(__file__).parent / "live_view.js").read_text(), css=_LIVE_CSS,
    isolate_styles=False)  # plotly.js needs its chart in the document, not in a shadow root

# How often a live view asks the server for news (ms): the progress line keeps the lag from a logged
# batch to the screen under 1 s; the figures follow slower, the per-batch one, the costliest to
# redraw, slowest. A tick without news costs a request answered "no change". Measured in
# benchmarks/watch_overhead.py (README: "Watching a run").
PROGRESS_EVERY_MS = 1000
FIGURE_EVERY_MS = {"epochs": 3000, "batches": 10000}
WATCH_EVERY_MS = 2000


def live_progress(run_id: str, snapshot: dict) -> None:
    """The progress line of a running or queued run, kept up to date in the browser
    (``live_view.js``); ``snapshot`` is ``live.run_snapshot`` now, drawn at once. When the run logs
    an epoch or a probe record or changes state, the fragment around it (or the page) re-runs once."""
    _live_component(key=f"live_progress_{run_id}", on_changed_change=lambda: None, data={
        "view": "progress", "run": run_id, "snapshot": snapshot, "state": snapshot["state"],
        "epochs": snapshot["epochs"], "probes": snapshot["probes"], "every_ms": PROGRESS_EVERY_MS,
        "path": webapp.path(webapp.RUN_LIVE, run_id=run_id), **_route_data()})


def live_figure(run_id: str, name: str, smoothing: float = 0.9) -> None:
    """One of a running run's figures (``live.FIGURES``: "epochs" or "batches"), fetched and
    updated in place in the browser while it trains."""
    _live_component(key=f"live_{name}_{run_id}", data={
        "view": "figure", "figure": name, "run": run_id, "smoothing": smoothing,
        "every_ms": FIGURE_EVERY_MS[name], "plotly": webapp.plotly_js_path(),
        "path": webapp.path(webapp.RUN_FIGURE, run_id=run_id, name=name), **_route_data()})


def live_watch_experiment(exp_id: str, version: str) -> None:
    """Nothing to see: asks the sweep's live route every 2 s in the browser and re-runs the
    fragment around it once its version differs from ``version``."""
    _live_component(key=f"watch_{exp_id}", on_changed_change=lambda: None, data={
        "view": "watch", "path": webapp.path(webapp.EXPERIMENT_LIVE, exp_id=exp_id), "version": version,
        "every_ms": WATCH_EVERY_MS, **_route_data()})


def _route_data() -> dict:
    """What every live view needs to reach the routes: the base URL path and this session's key."""
    return {"base": str(st.get_option("server.baseUrlPath") or "").strip("/"), "key": route_key(),
            "key_header": access.ROUTE_KEY_HEADER}


def upscale(image: np.ndarray, factor: int = 4) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, 3) uint8 image: crisp pixels, no blur."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _option_label(name: str, value: object) -> str:
    if value is None:
        return "all" if name.endswith("_limit") else "none"
    if name == "norm":
        return NORM_LABELS.get(str(value), str(value))
    if name.endswith("_limit"):
        return f"first {value:,}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


MAX_TEXT_SETTING = 600  # characters of a free-text setting's box


def setting_widget(name: str, label: str | None = None, key: str | None = None,
                   disabled: bool = False, recipe: str = DEFAULT_RECIPE) -> object:
    """The widget for one ``TrainSettings`` field, built from its spec (type, range, choices, unit,
    help): choices -> radio, suggested values -> select slider / select box, ranges -> slider or
    number input, bool -> checkbox. It starts at the named ``recipe``'s value (each recipe keeps
    its own widgets, so switching back keeps what was chosen there). Returns the chosen value."""
    spec = TrainSettings.spec(name)
    default = recipe_values(recipe).get(name, TrainSettings.default(name))
    text = label or name.replace("_", " ").capitalize() + (f" ({spec.unit})" if spec.unit else "")
    key = (key or f"set_{name}") + ("" if recipe == DEFAULT_RECIPE else f"@{recipe}")
    common = dict(key=key, help=f"{spec.help}; {spec.describe_range()}", disabled=disabled)
    if spec.kind is bool:
        return st.checkbox(text, value=bool(default), **common)
    if spec.kind is str and spec.choices is None:  # free text (the teacher's run ids)
        return st.text_input(text, value=str(default), max_chars=MAX_TEXT_SETTING, **common).strip()
    if spec.choices is not None and len(spec.choices) <= 4:
        return st.radio(text, spec.choices, index=spec.choices.index(default), horizontal=True,
                        format_func=lambda v: _option_label(name, v), **common)
    if spec.choices is not None:  # many choices (the normalizations): a compact select box
        return st.selectbox(text, spec.choices, index=spec.choices.index(default),
                            format_func=lambda v: _option_label(name, v), **common)
    if spec.suggested and spec.kind is int:
        options = list(spec.suggested)
        if spec.optional:
            return st.selectbox(text, options, index=options.index(default),
                                format_func=lambda v: _option_label(name, v), **common)
        return st.select_slider(text, options, value=default, **common)
    if spec.kind is int and spec.high is not None and spec.high - (spec.low or 0) <= 100:
        return st.slider(text, int(spec.low or 0), int(spec.high), int(default), **common)
    if spec.kind is int:
        return int(st.number_input(text, int(spec.low or 0), int(spec.high or 2**31 - 1), int(default),
                                   step=1, **common))
    low = float(spec.low or 0.0)
    step = 10 ** np.floor(np.log10(abs(float(default)))) / 10 if default else 0.01
    return float(st.number_input(text, low + (step if spec.low_open else 0.0), float(spec.high or 1e9),
                                 float(default), step=float(step), format="%g", **common))


def image_grid(data: CifarData, indices: list[int], captions: list[str], key: str, view: object,
               page_size: int = 40) -> None:
    """Test images ``indices`` as a paged grid of pixel-crisp 128 px tiles with ``captions``;
    the page resets to 1 when ``view`` (whatever defines the list) changes."""
    pages = max(1, (len(indices) + page_size - 1) // page_size)
    if st.session_state.get(f"{key}_view") != view or st.session_state.get(f"{key}_page", 1) > pages:
        st.session_state[f"{key}_view"], st.session_state[f"{key}_page"] = view, 1
    page = st.number_input(f"Page (of {pages}; {len(indices):,} images)", 1, pages, key=f"{key}_page")
    lo, hi = (page - 1) * page_size, page * page_size
    st.image([upscale(data.test_x[i].permute(1, 2, 0).numpy(), 4) for i in indices[lo:hi]],
             caption=captions[lo:hi], width=128)


def attribution_views(loaded, image32: np.ndarray, targets: dict[str, int], key: str,
                      integrated: bool = True) -> None:
    """Grad-CAM (chosen layer) for each of ``targets`` ({caption: class index}) and, with
    ``integrated``, Integrated Gradients for the first one, overlaid on the upscaled image."""
    from cifar_app.lab.attribution import (
        GRADCAM_LAYERS,
        gradcam,
        integrated_gradients,
        layer_resolution,
        overlay,
    )

    layer = st.radio("Grad-CAM layer", GRADCAM_LAYERS, horizontal=True, key=f"{key}_layer")
    side = layer_resolution(loaded, layer)
    st.caption(f"Grad-CAM at {layer} works on its {side}×{side} feature maps"
               + (" — on the last stage of a 32×32 input that is an 8×8 map, upsampled, so it is "
                  "coarse by construction" if side == 8 else "") + ". Attribution runs in eval mode "
               "with the model's own preprocessing.")
    cols = st.columns(len(targets) + int(integrated))
    for col, (caption, target) in zip(cols, targets.items()):
        col.image(overlay(image32, gradcam(loaded, image32, target, layer)), caption=f"Grad-CAM: {caption}")
    if integrated:
        caption, target = next(iter(targets.items()))
        cols[-1].image(overlay(image32, integrated_gradients(loaded, image32, target)),
                       caption=f"Integrated Gradients: {caption}")
