"""Writing a run's files safely: atomic writes (temp file in the same folder, fsync, rename: a
reader or a kill never sees a torn file), the per-file locks every read-modify-write holds, and
whether a process is alive."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def os_reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` whole or not at all: ``write(f)`` into a temp file beside it, fsync, rename.
    Raises ``StoreError`` (naming the path) when the folder cannot be written; no temp file stays."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise StoreError(f"cannot write {path}: {os_reason(e)}") from None
    try:
        os.fchmod(fd, 0o644)  # as a plain open() would leave it (mkstemp makes it private)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {os_reason(e)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` (UTF-8) to ``path`` whole or not at all."""
    data = text.encode("utf-8")
    atomic_write(Path(path), lambda f: f.write(data))


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON to ``path`` atomically (see ``atomic_write``)."""
    data = json.dumps(obj, indent=1).encode()
    atomic_write(Path(path), lambda f: f.write(data))


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a live (not zombie) process on this machine."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def file_lock(path: Path):
    """An exclusive ``flock`` on ``path`` (created if needed) for a read-modify-write of a file
    other processes also write; released when the block ends, or by the OS if the holder dies.
    ``StoreError`` when the lock file cannot be created (a read-only store)."""
    return _file_lock(Path(path))


@contextlib.contextmanager
def _file_lock(path: Path):
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(f"cannot write {path}: {os_reason(e)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class StoreError(RuntimeError):
    """The run store could not be written; the message names the path and the reason."""
