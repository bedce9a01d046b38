"""Incremental reading of append-only JSON-lines logs, the way TensorBoard reads its event files.

A live page asks for a run's metrics every couple of seconds while the worker appends a line per
batch. Re-reading and re-parsing the whole log each time costs O(log size) per tick; ``LogCache``
remembers, per file, how far it has parsed and what it built, so that

- an unchanged file (same inode, size and mtime) is not read at all: the last result is returned;
- a grown file is read from the last complete line on, and only the new lines are parsed;
- a replaced file (new inode: an atomic rewrite, e.g. a resume trimming the log), a shrunk one, or
  one whose already-parsed bytes changed in place is read again from the start.

The text after the last newline may be a line the writer is still writing: it is left for the next
read. It must look like the start of a record (``{`` and ASCII, as ``json.dumps`` writes), else
``LogDamaged``. Which file holds what, and what a record means, is the caller's business (the run
store): it passes the line parser and the function that builds its result.
"""

from __future__ import annotations

import bisect
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SAMPLE = 256  # bytes compared at the start of the file and before the parsed offset


class LogDamaged(ValueError):
    """A line that is not a record: ``reason`` says which line and why."""


# JSON object -> (kind, order, record): records of one kind are kept in ``order``, and a later
# record of the same kind and order replaces the earlier one. A ValueError's message is reported
# with the line number.
ParseLine = Callable[[dict], tuple[str, int, Any]]
Build = Callable[[dict[str, list]], Any]   # {kind: records in order} (fresh lists) -> the result


@dataclass
class _State:
    ident: tuple[int, int]          # (st_dev, st_ino)
    size: int                       # bytes read so far (the parsed part and the unfinished tail)
    mtime_ns: int
    offset: int = 0                 # bytes parsed: up to and including the last newline
    lines: int = 0                  # lines parsed
    head: bytes = b""               # the file's first bytes
    before: bytes = b""             # the bytes just before ``offset``
    orders: dict[str, list[int]] = field(default_factory=dict)   # per kind, increasing
    records: dict[str, list] = field(default_factory=dict)       # per kind, in that order
    result: Any = None
    parses: int = 0                 # lines parsed over this state's life (for tests)


class LogCache:
    """Parsed logs by path, the least recently used dropped while the logs held add up to more
    than ``max_bytes`` of log text (what a parsed log costs grows with its size, not with the number
    of files: about 3x its bytes in Python objects; a log larger than the bound is parsed and
    returned but not kept). Thread-safe: the Streamlit server reads from one thread per session."""

    def __init__(self, max_bytes: int = 32 * 2**20) -> None:
        self._states: OrderedDict[str, _State] = OrderedDict()
        self._lock = threading.Lock()
        self.max_bytes = max_bytes
        self.held_bytes = 0  # log bytes parsed by the entries held
        self.reads = 0  # file reads done (for tests: an unchanged log is not read)

    def read(self, path: Path, parse_line: ParseLine, build: Build, empty: Callable[[], Any]) -> Any:
        """The result of ``build`` over the log's records (a later record with the same key replaces
        the earlier one); ``empty()`` when the file does not exist. Raises ``LogDamaged`` for a bad
        line, ``OSError`` when the file cannot be read. The result is shared between callers: treat
        it as read-only."""
        key = str(path)
        with self._lock:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                self._drop(key)
                return empty()
            state = self._states.get(key)
            ident = (st.st_dev, st.st_ino)
            if state is not None and state.ident == ident and state.size == st.st_size \
                    and state.mtime_ns == st.st_mtime_ns:
                self._states.move_to_end(key)
                return state.result
            self._drop(key)  # advanced below, then held again by its new size
            state = self._advance(path, state, ident, st, parse_line, build)
            if state.size <= self.max_bytes:
                self._states[key] = state
                self.held_bytes += state.size
                while self.held_bytes > self.max_bytes:
                    self._drop(next(iter(self._states)))
            return state.result

    def _drop(self, key: str) -> None:
        state = self._states.pop(key, None)
        if state is not None:
            self.held_bytes -= state.size

    def parses(self, path: Path) -> int:
        """Lines parsed for ``path`` since it was (re)read from the start (0 when not cached)."""
        with self._lock:
            state = self._states.get(str(path))
            return state.parses if state else 0

    def _advance(self, path: Path, state: _State | None, ident: tuple[int, int], st: os.stat_result,
                 parse_line: ParseLine, build: Build) -> _State:
        self.reads += 1
        with open(path, "rb") as f:
            if state is None or state.ident != ident or st.st_size < state.offset \
                    or not _prefix_unchanged(f, state):
                state = _State(ident, 0, st.st_mtime_ns)
            f.seek(state.offset)
            data = f.read()
        lines = data.split(b"\n")
        tail = lines.pop()
        _check_tail(tail)
        changed = False
        for kind, order, record in _parse_lines(lines, state.lines, parse_line):
            state.parses += 1
            _put(state.orders.setdefault(kind, []), state.records.setdefault(kind, []), order, record)
            changed = True
        state.lines += len(lines)
        consumed = len(data) - len(tail)
        if consumed:
            if state.offset == 0:
                state.head = data[:min(_SAMPLE, consumed)]
            state.before = (state.before + data[:consumed])[-_SAMPLE:]
            state.offset += consumed
        state.size = state.offset + len(tail)
        state.mtime_ns = st.st_mtime_ns
        if changed or state.result is None:
            state.result = build({kind: list(rs) for kind, rs in state.records.items()})
        return state


def check_log(data: bytes, parse_line: ParseLine) -> int:
    """Validate a whole log held in memory (e.g. inside an imported bundle) exactly as ``LogCache``
    reads one: every complete line must be a record ``parse_line`` accepts, and an unfinished last
    line must look like the start of one. Returns the number of records; ``LogDamaged`` otherwise."""
    lines = data.split(b"\n")
    _check_tail(lines.pop())
    return sum(1 for _ in _parse_lines(lines, 0, parse_line))


def _check_tail(tail: bytes) -> None:
    if tail.strip() and not (tail.lstrip().startswith(b"{") and tail.isascii()):
        raise LogDamaged("its last line is not (the start of) a record")


def _parse_lines(lines: list[bytes], before: int, parse_line: ParseLine):
    """(kind, order, record) for each non-empty line; ``before`` lines precede them in the file."""
    for no, line in enumerate(lines, start=before + 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise LogDamaged(f"line {no} is not UTF-8 text") from None
        except ValueError as e:
            raise LogDamaged(f"line {no}: {e}") from None
        if not isinstance(obj, dict):
            raise LogDamaged(f"line {no}: a JSON {type(obj).__name__}, not a record")
        try:
            yield parse_line(obj)
        except ValueError as e:
            raise LogDamaged(f"line {no}: {e}") from None


def _put(orders: list[int], records: list, order: int, record: Any) -> None:
    """Insert ``record`` at ``order`` (appending in the usual case), replacing one already there."""
    if not orders or order > orders[-1]:
        orders.append(order)
        records.append(record)
        return
    i = bisect.bisect_left(orders, order)
    if i < len(orders) and orders[i] == order:
        records[i] = record
    else:
        orders.insert(i, order)
        records.insert(i, record)


def _prefix_unchanged(f, state: _State) -> bool:
    """Whether the bytes already parsed still read the same at the start and just before the
    offset (catches a log rewritten in place rather than appended to)."""
    if state.offset == 0:
        return True
    f.seek(0)
    if f.read(len(state.head)) != state.head:
        return False
    f.seek(state.offset - len(state.before))
    return f.read(len(state.before)) == state.before
