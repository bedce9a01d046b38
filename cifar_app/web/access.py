"""Who may do what in the dashboard: the one place the access policy is written.

By default the server listens on 127.0.0.1 only (``.streamlit/config.toml``) and whoever can open it
may do everything, as with TensorBoard or Jupyter on localhost. A server that is *exposed* (bound to
an address that is not loopback, or ``CIFAR_APP_REQUIRE_TOKEN=1`` behind a reverse proxy on the same
machine) asks for an access token: ``$CIFAR_APP_TOKEN``, or one generated at start and printed in the
server's console, as Jupyter does. A visitor without it gets:

- by default, nothing but the token prompt (as Jupyter): no page, no run, no live route;
- with ``--public-read`` (``CIFAR_APP_PUBLIC_READ=1``), a read-only viewer of curves and tables (as
  TensorBoard shows its runs): no download, no upload, no export, nothing computed for them on the
  server, no server folders.

With the token, everything is allowed. ``Action`` names what a page or route is about to do;
``Policy.allows`` is the only rule.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

TOKEN_ENV = "CIFAR_APP_TOKEN"
REQUIRE_ENV = "CIFAR_APP_REQUIRE_TOKEN"
PUBLIC_READ_ENV = "CIFAR_APP_PUBLIC_READ"
ROUTE_KEY_HEADER = "X-Lab-Key"  # how the live view proves its page session holds the token
KEY_COOKIE = "cifar_lab_key"    # the same key, kept by the browser: reloads and new tabs keep access
KEY_COOKIE_MAX_AGE_S = 7 * 24 * 3600  # set by the server (``webapp``), HttpOnly, SameSite=Strict
KEY_VERSION_FILE = ".access-key-version"  # in the runs folder: bumped by `serve --revoke-keys`
MIN_TOKEN_LENGTH = 16           # an exposed server refuses a shorter token it is given
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(24))"'
FREE_TRIES = 5                  # wrong tokens a client may give before each try waits
MAX_WAIT_S = 60.0               # the longest wait between tries
TRACKED_CLIENTS = 10_000        # the throttle forgets the oldest client beyond this
_generated: str | None = None
_lock = threading.Lock()


class Action(StrEnum):
    """What a visitor may be allowed to do."""

    VIEW = "view"          # see the pages' curves, tables and images; the live routes
    CHANGE = "change"      # start, stop, resume, rename, delete, import a run, download CIFAR-10
    DOWNLOAD = "download"  # take a run's files away: bundle, metrics and predictions CSV, ONNX
    COMPUTE = "compute"    # make the server work for them: classify uploads, ONNX export, batch
                           # dependence, Grad-CAM / Integrated Gradients
    PATHS = "paths"        # see the server's folders (runs, data)


@dataclass(frozen=True)
class Policy:
    """The access policy of one server.

    Args:
        token_required: the server is exposed (see the module docstring).
        public_read: visitors without the token may view (``Action.VIEW`` only).
    """

    token_required: bool
    public_read: bool = False

    def allows(self, action: Action, granted: bool) -> bool:
        """Whether a visitor may do ``action``; ``granted``: they gave the token."""
        if not self.token_required or granted:
            return True
        return self.public_read and action == Action.VIEW

    def describe(self, granted: bool) -> str:
        """What a visitor without the token can do, in the sidebar's words (from ``allows``)."""
        if not self.token_required or granted:
            return "You can view and change everything."
        if self.allows(Action.VIEW, granted):
            return ("**Read-only.** This app is reachable from other machines, so without the access "
                    "token you can only view curves and tables. Starting, stopping, renaming, "
                    "deleting, importing, downloading or exporting runs, classifying images and "
                    "measuring need the token (`CIFAR_APP_TOKEN`, or the one printed in the "
                    "server's console).")
        return ("**Private.** This app is reachable from other machines, so it shows nothing without "
                "the access token (`CIFAR_APP_TOKEN`, or the one printed in the server's console).")


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; False for '' / None (Streamlit then binds every
    interface), 0.0.0.0, :: and any other address or host name."""
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _flag(env: dict, name: str) -> bool:
    return str(env.get(name, "")).strip().lower() in ("1", "true", "yes", "on")


def token_required(address: str | None, env: dict | None = None) -> bool:
    """Whether a server bound to ``address`` asks for the token."""
    env = os.environ if env is None else env
    return _flag(env, REQUIRE_ENV) or not is_loopback(address)


def policy(address: str | None, env: dict | None = None) -> Policy:
    """The policy of a server bound to ``address`` (``$CIFAR_APP_REQUIRE_TOKEN``,
    ``$CIFAR_APP_PUBLIC_READ`` from ``env``, default the process environment)."""
    env = os.environ if env is None else env
    return Policy(token_required(address, env), _flag(env, PUBLIC_READ_ENV))


def server_token(env: dict | None = None) -> tuple[str, bool]:
    """(the access token, whether it was generated here). ``$CIFAR_APP_TOKEN`` when set, else a
    random token made once per server process."""
    global _generated
    env = os.environ if env is None else env
    if env.get(TOKEN_ENV):
        return str(env[TOKEN_ENV]), False
    with _lock:
        if _generated is None:
            _generated = secrets.token_urlsafe(24)
        return _generated, True


_PATH = re.compile(
    r"\b[A-Za-z][A-Za-z0-9+.-]*:/{1,3}[^\s'\"]*"          # URLs (file://, http://host:port/...)
    r"|(?<![\w.<])[A-Za-z]:[\\/][^\s'\"]*"              # C:\... and C:/...
    r"|\\\\[^\s'\"]+"                                    # \\server\share
    r"|(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?"      # IPv4 addresses (a Ray head, a proxy)
    r"|(?<![\w.<])~?(?:/[^\s/'\"()\[\],;:<>`]+)+/?")     # /abs/path, ~/path, dir:/path


def redact(text: object) -> str | None:
    """``text`` (an error message) without server paths or addresses, for a visitor who may not see
    them (``Action.PATHS``): each absolute path (POSIX, Windows, UNC, file URL) and IPv4 address
    becomes "<server path>". None stays None."""
    if text is None:
        return None
    return _PATH.sub("<server path>", str(text))


def shown(text: object, may_see_paths: bool) -> str | None:
    """An error message as a visitor may see it: whole with ``Action.PATHS``, else ``redact``ed."""
    return None if text is None else (str(text) if may_see_paths else redact(text))


def token_problem(token: str) -> str | None:
    """Why a token given to an exposed server is too weak (None when it is not)."""
    if len(token) < MIN_TOKEN_LENGTH:
        return (f"the access token is {len(token)} characters; an exposed server needs at least "
                f"{MIN_TOKEN_LENGTH}. Make one with: {MAKE_TOKEN}")
    return None


class Throttle:
    """Wrong tokens slow their client down: after ``FREE_TRIES`` wrong tries a client waits 1 s before
    the next is even checked, then 2, 4, ... up to ``MAX_WAIT_S``; a right token forgets it. In
    memory, for at most ``TRACKED_CLIENTS`` clients (the oldest forgotten first)."""

    def __init__(self, clock=None) -> None:
        import time

        self._clock = clock or time.monotonic
        self._state: dict[str, tuple[int, float]] = {}  # client -> (wrong tries, not before)
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """Seconds this client must still wait before its next try is checked (0: go ahead)."""
        with self._lock:
            _, not_before = self._state.get(client, (0, 0.0))
        return max(0.0, not_before - self._clock())

    def failed(self, client: str) -> None:
        with self._lock:
            tries, _ = self._state.pop(client, (0, 0.0))
            tries += 1
            wait = 0.0 if tries <= FREE_TRIES else min(MAX_WAIT_S, 2.0 ** (tries - FREE_TRIES - 1))
            self._state[client] = (tries, self._clock() + wait)
            while len(self._state) > TRACKED_CLIENTS:
                self._state.pop(next(iter(self._state)))

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._state.pop(client, None)


THROTTLE = Throttle()


def token_matches(given: object, expected: str) -> bool:
    """Constant-time comparison of UTF-8 bytes (any text gives True or False, never an error); an
    empty token never matches. Surrounding whitespace is ignored (pasted tokens)."""
    if not isinstance(given, str) or not expected:
        return False
    given_b = given.strip().encode("utf-8", "surrogatepass")
    return bool(given_b) and hmac.compare_digest(given_b, expected.encode("utf-8"))


_version_cache: tuple[str, float, int] | None = None


def _version_path() -> Path:
    from cifar_app.store.runstore import default_runs_dir

    return default_runs_dir() / KEY_VERSION_FILE


def key_version() -> int:
    """The version of the keys this server accepts (0 until keys are first revoked); read from the
    runs folder, again whenever the file changes, so a revocation takes effect at once."""
    global _version_cache
    path = _version_path()
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return 0
    if _version_cache and _version_cache[:2] == (str(path), mtime):
        return _version_cache[2]
    try:
        version = int(path.read_text(encoding="ascii").strip() or 0)
    except (OSError, ValueError, UnicodeDecodeError):
        version = 0
    _version_cache = (str(path), mtime, version)
    return version


def revoke_keys() -> int:
    """Make every key (and so every browser's cookie) given so far invalid, without changing the
    token: the key version goes up by one. Returns the new version."""
    from cifar_app.store.fileio import write_text_atomic

    version = key_version() + 1
    path = _version_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, f"{version}\n")
    return version


def route_key(token: str, version: int | None = None) -> str:
    """The key the live view sends with each request (``ROUTE_KEY_HEADER``) and the browser keeps
    in its HttpOnly cookie once its page session holds the token: derived from the token and the
    key version, so the token itself never travels again and revoking keys needs no new token."""
    version = key_version() if version is None else version
    label = b"cifar-app live routes" + (f" v{version}".encode() if version else b"")
    return hmac.new(token.encode("utf-8"), label, hashlib.sha256).hexdigest()


def key_matches(key: object, token: str) -> bool:
    """Whether ``key`` (from the header or the cookie) is ``route_key(token)``; constant-time."""
    return isinstance(key, str) and hmac.compare_digest(key.encode("utf-8", "surrogatepass"),
                                                        route_key(token).encode())


def key_granted(keys: tuple[object, ...] | object, token: str) -> bool:
    """Whether any of a request's keys (header, cookie) is the key of a session that gave the token."""
    keys = keys if isinstance(keys, tuple) else (keys,)
    return any(key_matches(k, token) for k in keys)


def route_allowed(pol: Policy, keys: tuple[object, ...] | object, token: str) -> bool:
    """Whether a request to a live route (``Action.VIEW``) is allowed: always when the policy lets
    anyone view, else only with the key of a session that gave the token (header or cookie)."""
    return pol.allows(Action.VIEW, granted=False) or key_granted(keys, token)
