"""Nagle's algorithm off for the server's connections.

Streamlit's server binds its listening socket itself, as ``socket.socket(family)``: protocol 0.
asyncio turns Nagle's algorithm off (``TCP_NODELAY``) only on sockets whose protocol says TCP, so
it stays on for every connection that socket accepts. A response written in two parts (its headers,
then its body) then holds the second part until the browser acknowledges the first, and the browser
delays that acknowledgement: 40 ms on Linux, on every response after the first on a kept-alive
connection (each of a first view's ~150 script files, every health check) and between the
websocket's messages. Measured on the lab's VM: a request on a kept-alive connection took 44 ms,
the first on a new one 1 ms.

``listeners_without_delay`` sets ``TCP_NODELAY`` on the process's listening TCP sockets; the
connections they accept inherit it (Linux). ``web.app.server`` runs it when the server starts: in
its ASGI lifespan, after Streamlit has bound its socket and before the server accepts from it.
The kernel completes handshakes from the bind on, though, and such a connection takes the
listener's options as they were then: one made in that second (a browser tab reconnecting to a
restarted server) keeps Nagle's algorithm for as long as it stays open.
"""

from __future__ import annotations

import os
import socket
import stat

FD_DIRS = ("/proc/self/fd", "/dev/fd")  # Linux; macOS and the BSDs


def listeners_without_delay() -> int:
    """Set ``TCP_NODELAY`` on each listening TCP socket of this process; returns how many."""
    folder = next((d for d in FD_DIRS if os.path.isdir(d)), None)
    if folder is None:
        return 0
    done = 0
    for name in os.listdir(folder):
        try:
            if not stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))  # a copy of the descriptor: closed below
        except (OSError, ValueError):  # closed meanwhile (the listing's own), or not a TCP/IP one
            continue
        with sock:
            try:
                if (sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
                        and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    done += 1
            except OSError:
                continue
    return done
