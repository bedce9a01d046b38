"""Streamlit helpers shared by the pages: cached resources and the run picker.

Everything here is thin: it reads from the run store / data and hands results to Streamlit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from .charts import NORM_LABELS
from .data import CifarData, DataError, dataset_status, default_data_dir, load_cifar10
from .runstore import Run, RunStore, default_runs_dir


def data_dir() -> Path:
    """The data folder this server uses ($CIFAR_APP_DATA or ./data)."""
    return default_data_dir()


@st.cache_resource(show_spinner=False)
def _store(root: str) -> RunStore:
    return RunStore(root)


def store() -> RunStore:
    """The run store ($CIFAR_APP_RUNS or ./runs), one per server."""
    return _store(str(default_runs_dir()))


@st.cache_resource(show_spinner="Loading CIFAR-10 (once per server)...")
def _load(root: str, marker: tuple) -> CifarData:
    return load_cifar10(root)


def dataset() -> CifarData | None:
    """The dataset, loaded once per server and folder; None (with the reason in
    ``st.session_state['data_error']``) when it is not there."""
    root = data_dir()
    status = dataset_status(root)
    if not status["found"]:
        st.session_state["data_error"] = str(_missing_message(root))
        return None
    try:
        return _load(str(root), (status["kind"], status["path"]))
    except DataError as e:
        st.session_state["data_error"] = str(e)
        return None


def _missing_message(root: Path) -> str:
    try:
        load_cifar10(root)
    except DataError as e:
        return str(e)
    return ""


def run_label(run: Run) -> str:
    """'label (GroupNorm, completed)' for select boxes."""
    s = run.summary()
    ref = ", reference" if run.reference else ""
    return f"{s['label']} ({NORM_LABELS.get(s['norm'], s['norm'])}, {s['status']}{ref})"


def _url_follows(key: str) -> None:
    st.query_params["run"] = st.session_state[key]


def pick_run(runs: list[Run], key: str, label: str = "Run") -> Run | None:
    """A select box over ``runs`` kept in step with ``?run=ID`` in the URL: the URL picks the run
    (a link, a new run just started), and picking another run updates the URL, so the page can be
    bookmarked or shared."""
    if not runs:
        return None
    by_id = {r.id: r for r in runs}
    wanted = st.query_params.get("run")
    if wanted in by_id and st.session_state.get(key) != wanted:
        st.session_state[key] = wanted
    chosen = st.selectbox(label, list(by_id), key=key, format_func=lambda i: run_label(by_id[i]),
                          on_change=_url_follows, args=(key,))
    if wanted != chosen:
        st.query_params["run"] = chosen
    return by_id[chosen]


def completed_runs() -> list[Run]:
    """Runs with a trained model, user runs first (newest first), then reference runs."""
    return [r for r in store().list() if r.model_path.exists()]


def upscale(image: np.ndarray, factor: int = 4) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, 3) uint8 image: crisp pixels, no blur."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def data_missing_hint() -> None:
    """Tell the user the test set is missing and where to fix it."""
    st.warning("The CIFAR-10 test set is not available, so this needs the dataset. "
               "See the **Runs** page to download it, or point `CIFAR_APP_DATA` at a copy.")
    if st.session_state.get("data_error"):
        with st.expander("details"):
            st.text(st.session_state["data_error"])


@st.cache_resource(show_spinner="Scoring the test set…", max_entries=16)
def _evaluation(run_path: str, model_mtime: float, fingerprint: str):
    from .analysis import run_evaluation

    run = next(r for r in store().list() if str(r.path) == run_path)
    return run_evaluation(run, dataset())


def evaluation(run: Run):
    """The run's test-set evaluation on the loaded data (stored predictions when they match)."""
    data = dataset()
    return _evaluation(str(run.path), run.model_path.stat().st_mtime, data.test_fingerprint)


@st.cache_resource(max_entries=16, show_spinner=False)
def _loaded_model(run_path: str, model_mtime: float):
    from .inference import load_model

    return load_model(next(r for r in store().list() if str(r.path) == run_path))


def loaded_model(run: Run):
    """The run's model, loaded once per server (reloaded if its file changes)."""
    return _loaded_model(str(run.path), run.model_path.stat().st_mtime)


def ensure_navigation() -> None:
    """Make a deep link (e.g. ``/train?run=...``) use ``dashboard.py``'s navigation.

    Streamlit treats an app with a ``pages/`` folder as an old-style multipage app until its entry
    script has called ``st.navigation`` once in this server process; a page opened by URL before
    that would run alone, without the app's navigation and layout. Switch the flag and rerun: the
    rerun goes through ``dashboard.py``, which routes to the same page.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a Streamlit without this internal
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def preview(data: bytes, min_side: int = 160) -> np.ndarray:
    """An uploaded image (already validated by ``decode_image``) for display: RGB, EXIF-rotated,
    and pixel-crisp upscaled when it is smaller than ``min_side`` (a 32x32 photo stays sharp)."""
    import io

    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        im.seek(0)
        im = (ImageOps.exif_transpose(im) or im).convert("RGB")
    arr = np.asarray(im)
    factor = -(-min_side // max(1, min(arr.shape[:2])))  # ceil
    return upscale(arr, factor) if factor > 1 else arr
