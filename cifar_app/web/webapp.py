"""The dashboard's server: Streamlit's own app plus read-only HTTP routes for its live views.

``dashboard.py`` builds ``st.App("dashboard.py", routes=routes())``, so ``streamlit run dashboard.py``
serves these next to the pages (under ``server.baseUrlPath`` when one is set):

- ``GET lab/runs/{run_id}/live`` — ``live.run_snapshot`` as JSON: a few hundred bytes a second per
  watching tab, where a Streamlit fragment re-run re-renders the page's elements in the browser;
- ``GET lab/runs/{run_id}/figures/{epochs|batches}?smoothing=0.9&have=VERSION`` — the epoch curves
  or the per-batch figure as Plotly JSON, which the page applies in place with ``Plotly.react``
  (304 when it has that version already, 204 before there is data);
- ``GET lab/experiments/{exp_id}/live`` — ``live.experiment_snapshot``: the Experiments page
  re-draws a running sweep when its version changes;
- ``GET lab/plotly-{version}.min.js`` — plotly.js from the installed ``plotly`` package (cached
  for a year: the version is in the name), for the live view's chart.

They only read, and show what the pages show: anyone may ask them when the server's access policy
lets anyone view (``cifar_app.web.access``); a private exposed server answers 403 unless the request
carries the route key of a page session that gave the token (header, or the browser's cookie).
The routes' addresses are written here only (``RUN_LIVE``, ``RUN_FIGURE``, ``EXPERIMENT_LIVE``);
pages get them from ``path``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path

import plotly
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from cifar_app.lab.experiments import ExperimentNotFound, ExperimentStore
from cifar_app.store.run import RunDamaged, RunNotFound
from cifar_app.store.runstore import default_store
from cifar_app.web import access, live

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLOTLY_VERSION = plotly.offline.get_plotlyjs_version()
NO_STORE = {"Cache-Control": "no-store"}
RUN_LIVE = "lab/runs/{run_id}/live"
RUN_FIGURE = "lab/runs/{run_id}/figures/{name}"
EXPERIMENT_LIVE = "lab/experiments/{exp_id}/live"
SESSION = "lab/session"  # POST with the route key: the server sets the browser's HttpOnly key cookie


def path(route: str, **params: str) -> str:
    """The address of ``route`` (one of the patterns above) for ``params``, relative to the app."""
    from urllib.parse import quote

    return route.format(**{k: quote(str(v), safe="") for k, v in params.items()})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=NO_STORE)


def _guarded(handler, pol: access.Policy):
    """``handler``, answering 403 instead when ``pol`` does not let this request view."""
    def guarded(request: Request) -> Response:
        keys = (request.headers.get(access.ROUTE_KEY_HEADER), request.cookies.get(access.KEY_COOKIE))
        token = access.server_token()[0]
        if not access.route_allowed(pol, keys, token):
            return _error(403, "this lab is private: open it with the access token")
        granted = not pol.token_required or access.key_granted(keys, token)
        request.state.show_paths = pol.allows(access.Action.PATHS, granted)
        return handler(request)

    return guarded


class SharedAnswers:
    """Answers computed once and given to every viewer who asks the same question: a classroom's
    30 tabs on one run cost the server one snapshot a second and one figure per version, not 30.
    Bounded (the least recently asked dropped beyond ``size``); thread-safe (Starlette answers
    from a thread pool). Two first askers at the same instant may both compute; both get an answer."""

    def __init__(self, size: int = 256) -> None:
        self._answers: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, key: tuple, compute):
        with self._lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                return self._answers[key]
        value = compute()
        with self._lock:
            self._answers[key] = value
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
        return value


SNAPSHOT_SHARED_S = 1.0  # a run's snapshot is computed at most this often, for all its viewers
# ... and each live figure (the page asks for the epoch curves every 3 s, the per-batch ones every 10 s)
FIGURE_SHARED_S = {"epochs": 1.0, "batches": 5.0}
SHARED = SharedAnswers()


def _moment(every_s: float = SNAPSHOT_SHARED_S) -> int:
    """The current interval of ``every_s`` seconds: answers asked within one are shared."""
    return int(time.monotonic() / every_s)


def live_json(request: Request) -> Response:
    """``live.run_snapshot`` of one run (shared by its viewers for ``SNAPSHOT_SHARED_S``); 404 for
    an unknown run."""
    try:
        run = default_store().get(request.path_params["run_id"])
    except RunNotFound:
        return _error(404, "no such run")
    show_paths = getattr(request.state, "show_paths", True)
    key = ("live", str(run.path), show_paths, _moment())
    body = SHARED.get(key, lambda: JSONResponse(live.run_snapshot(run, show_paths)).body)
    return Response(body, media_type="application/json", headers=NO_STORE)


def figure_json(request: Request) -> Response:
    """One of a run's live figures (``live.FIGURES``): ``{"version": ..., "figure": <Plotly JSON>}``;
    304 when the request's ``have`` already names this version, 204 while it has no data."""
    name = request.path_params["name"]
    try:
        smoothing = float(request.query_params.get("smoothing", "0.9"))
    except ValueError:
        smoothing = math.nan
    if name not in live.FIGURES:
        return _error(404, f"no figure {name!r}")
    if not 0.0 <= smoothing <= 0.99:
        return _error(400, "smoothing must be a number in 0..0.99")
    try:
        run = default_store().get(request.path_params["run_id"])
        # the per-batch figure changes with every batch: its viewers share one per FIGURE_SHARED_S
        moment = _moment(FIGURE_SHARED_S[name])
        version, body = SHARED.get(("figure", str(run.path), name, smoothing, moment),
                                   lambda: _figure_answer(run, name, smoothing))
        if version is None:
            return Response(status_code=204, headers=NO_STORE)
        if request.query_params.get("have") == version:
            return Response(status_code=304, headers=NO_STORE)
    except RunNotFound:
        return _error(404, "no such run")
    except RunDamaged as e:
        return _error(409, e.short)
    return Response(body, media_type="application/json", headers=NO_STORE)


def _figure_answer(run, name: str, smoothing: float) -> tuple[str | None, str | None]:
    """(version, the answer's JSON body) of one live figure; (None, None) while it has no data."""
    version = live.figure_version(run, name, smoothing)
    if version is None:
        return None, None
    fig = live.figure(run, name, smoothing)
    return version, f'{{"version": {json.dumps(version)}, "figure": {fig.to_json()}}}'


def experiment_json(request: Request) -> Response:
    """``live.experiment_snapshot`` of one sweep; 404 for an unknown one, 409 for a damaged one."""
    exps = ExperimentStore(default_store())
    try:
        exp = exps.get(request.path_params["exp_id"])
        key = ("experiment", str(exps.root), exp.id, _moment())
        body = SHARED.get(key, lambda: JSONResponse(live.experiment_snapshot(exps, exp)).body)
        return Response(body, media_type="application/json", headers=NO_STORE)
    except ExperimentNotFound:
        return _error(404, "no such experiment")
    except RunDamaged as e:
        return _error(409, e.short)


def _session(base: str):
    def session(request: Request) -> Response:
        """Set the key cookie for a browser whose page session gave the token: the request carries
        the session's route key in its header (a cookie alone does not count: no cross-site
        request can mint one). HttpOnly (page scripts cannot read it), SameSite=Strict, scoped to
        the app's path."""
        key = request.headers.get(access.ROUTE_KEY_HEADER)
        if not access.key_matches(key, access.server_token()[0]):
            return _error(403, "this needs the route key of a session that gave the access token")
        response = Response(status_code=204, headers=NO_STORE)
        response.set_cookie(access.KEY_COOKIE, key, max_age=access.KEY_COOKIE_MAX_AGE_S, path=f"{base}/",
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    return session


def plotly_js(request: Request) -> Response:
    """plotly.min.js, cached for a year (its version is in the address)."""
    return FileResponse(PLOTLY_JS, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})


def routes(base_url_path: str = "", pol: access.Policy | None = None) -> list[Route]:
    """The live-view routes, under ``base_url_path`` (Streamlit's ``server.baseUrlPath``), guarded
    by the server's access policy ``pol`` (default: open, as on loopback)."""
    pol = pol or access.Policy(token_required=False)
    base = "/" + base_url_path.strip("/") if base_url_path.strip("/") else ""
    return [
        Route(f"{base}/{RUN_LIVE}", _guarded(live_json, pol), methods=["GET"]),
        Route(f"{base}/{RUN_FIGURE}", _guarded(figure_json, pol), methods=["GET"]),
        Route(f"{base}/{EXPERIMENT_LIVE}", _guarded(experiment_json, pol), methods=["GET"]),
        Route(f"{base}/{plotly_js_path()}", plotly_js, methods=["GET"]),  # a public library
        Route(f"{base}/{SESSION}", _session(base), methods=["POST"]),
    ]


def plotly_js_path() -> str:
    """The address of plotly.js relative to the app's root (for the live view's script)."""
    return f"lab/plotly-{PLOTLY_VERSION}.min.js"

