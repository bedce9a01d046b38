"""Who may change things in the dashboard.

By default the server listens on 127.0.0.1 only (``.streamlit/config.toml``), and whoever can open
it may start, stop and delete runs, as with TensorBoard or Jupyter on localhost. When the app is
exposed (bound to an address that is not loopback, or ``CIFAR_APP_REQUIRE_TOKEN=1`` behind a
reverse proxy), every action that changes state asks for an access token: ``$CIFAR_APP_TOKEN``, or
one generated at start and printed in the server's console, as Jupyter does. Without it the app is
read-only.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import threading

TOKEN_ENV = "CIFAR_APP_TOKEN"
REQUIRE_ENV = "CIFAR_APP_REQUIRE_TOKEN"
_generated: str | None = None
_lock = threading.Lock()


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


def token_required(address: str | None, env: dict | None = None) -> bool:
    """Whether state-changing actions need the token for a server bound to ``address``."""
    env = os.environ if env is None else env
    forced = str(env.get(REQUIRE_ENV, "")).strip().lower() in ("1", "true", "yes", "on")
    return forced or not is_loopback(address)


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


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison; an empty token never matches."""
    return bool(given) and bool(expected) and hmac.compare_digest(str(given).strip(), expected)
