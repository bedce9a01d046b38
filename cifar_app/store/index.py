"""The run index: every run's summary in one SQLite table in the runs folder, so that listing
10,000 runs reads one table, not 10,000 metrics logs.

The run folders stay the truth; the index is a cache that can always be rebuilt from them:

- each row keeps the *stamp* of the files its summary was made from (settings, status, metrics log
  and model: inode, size and modification time, taken before they were read). A listing stats
  those files; a run whose stamp changed since its row (a worker's epoch, a rename, a file edited
  by hand) is summarized again, alone. A folder without a row is added; a row without a folder is
  dropped;
- the summary is kept as the files say it, before the liveness check: the state of an active run
  depends on whether its process lives, so that check is made at every listing from the row's pid
  and heartbeat (``run.live_summary``), without reading the folder;
- the recorder writes its run's row at each epoch end and state change, under the run's status
  lock, so a listing rarely has anything to redo;
- a deleted index is rebuilt; a damaged one (not a database, a foreign schema) is removed and
  rebuilt, with a message (``RunIndex.notice``). Nothing is lost: the rows come from the folders.
  A store that cannot be written (a read-only folder) is listed from the folders, as before.

SQLite in WAL mode lets readers go on while a worker writes; every write is one transaction, so a
writer killed mid-update leaves the previous rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from cifar_app.core.settings import valid_run_id
from cifar_app.store.formats import INDEX, METRICS, MODEL, RUN_FILES, SETTINGS, STATUS
from cifar_app.store.run import Run, RunSummary, live_summary

SCHEMA_VERSION = 1
_STAMPED = (SETTINGS, STATUS, METRICS, MODEL)  # the files a summary is made from
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    folder    TEXT NOT NULL,     -- the folder holding the run (the runs folder or the reference runs')
    id        TEXT NOT NULL,
    stamp     TEXT NOT NULL,     -- inode:size:mtime_ns of each file in _STAMPED, '-' when absent
    pid       INTEGER,           -- from status.json, for the liveness check
    heartbeat REAL,
    summary   TEXT NOT NULL,     -- RunSummary.as_dict() as JSON, before the liveness check
    PRIMARY KEY (folder, id)
) WITHOUT ROWID
"""
BUSY_TIMEOUT_S = 10.0


def stamp(folder: Path) -> str | None:
    """The stamp of a run folder's summary files; None when none of ``RUN_FILES`` is there (not a
    run folder)."""
    parts, found = [], False
    for name in _STAMPED:
        try:
            st = os.stat(folder / name)
        except OSError:
            parts.append("-")
            continue
        found = found or name in RUN_FILES
        parts.append(f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts) if found else None


@contextlib.contextmanager
def _transaction(con: sqlite3.Connection):
    """One write transaction: all of it lands or none (a writer killed inside leaves the rows as
    they were)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _number(v: object, kind: type) -> int | float | None:
    return kind(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


class RunIndex:
    """The index file of one runs folder (``root / INDEX``); rows for that folder's runs and for
    the reference runs listed with them.

    Args:
        root: the runs folder. Nothing is created while it does not exist.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.path = self.root / INDEX
        self.notice: str | None = None  # set when a damaged index was rebuilt

    # ------------------------------------------------------------------ connection
    def _connect(self) -> sqlite3.Connection | None:
        """An open, checked connection; None when the index cannot be used here (no runs folder,
        a read-only one). A damaged file is removed and created again, with ``notice`` set."""
        if not self.root.is_dir():
            return None
        for attempt in (1, 2):
            con = None
            try:
                con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                con.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: safe when a process dies
                if con.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    self._create(con)
                con.execute("SELECT folder, id, stamp, pid, heartbeat, summary FROM runs LIMIT 1").fetchall()
                return con
            except sqlite3.OperationalError as e:
                if con is not None:
                    con.close()
                if "no such" not in str(e) and "no column" not in str(e):
                    return None  # locked too long, read-only, cannot open: list from the folders
                reason = f"it has another layout ({e})"
            except sqlite3.DatabaseError as e:  # not a database, malformed
                if con is not None:
                    con.close()
                reason = str(e)
            if attempt == 2 or not self._remove():
                return None
            self._say_rebuilt(reason)
        return None  # pragma: no cover

    def _say_rebuilt(self, reason: str) -> None:
        self.notice = (f"the run index {self.path} was damaged ({reason}); it was rebuilt from the "
                       "run folders, and no run was lost")

    def _rebuilt(self, reason: str) -> sqlite3.Connection | None:
        """Remove a damaged index and open a new one (None when that fails)."""
        if not self._remove():
            return None
        self._say_rebuilt(reason)
        return self._connect()

    def _create(self, con: sqlite3.Connection) -> None:
        con.execute("PRAGMA journal_mode=WAL")
        with _transaction(con):
            if con.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                con.execute("DROP TABLE IF EXISTS runs")
                con.execute(_SCHEMA)
                con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _remove(self) -> bool:
        try:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        except OSError:
            return False
        return True

    # ------------------------------------------------------------------ writing one run
    def put(self, run: Run) -> None:
        """Summarize ``run`` from its files and store its row (the recorder calls this under the
        run's status lock at each epoch end and state change). A failure leaves the row as it
        was: the next listing sees the files changed and redoes it."""
        con = self._connect()
        if con is None:
            return
        try:
            with _transaction(con):
                self._write(con, [self._row(run)])
        except sqlite3.Error:
            pass
        finally:
            con.close()

    @staticmethod
    def _row(run: Run, known_stamp: str | None = None) -> tuple:
        mark = known_stamp or stamp(run.path) or "-"  # taken before the files are read
        summary, st = run.raw_summary()
        return (str(run.path.parent), run.id, mark, _number(st.get("pid"), int),
                _number(st.get("heartbeat"), float), json.dumps(summary.as_dict()))

    @staticmethod
    def _write(con: sqlite3.Connection, rows: Iterable[tuple]) -> None:
        con.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)", rows)

    # ------------------------------------------------------------------ listing
    def summaries(self, folders: list[tuple[Path, bool]]) -> list[RunSummary]:
        """Every run in ``folders`` ((folder, reference) pairs), in their order; each folder's runs
        newest first for user runs, in name order for reference runs. Rows are redone for runs
        changed since, added for new folders and dropped for gone ones."""
        found: list[tuple[Path, bool, str, str]] = []  # (folder, reference, id, stamp)
        for folder, reference in folders:
            try:
                names = [e.name for e in os.scandir(folder) if valid_run_id(e.name) and e.is_dir()]
            except OSError:
                continue
            names.sort(reverse=not reference)
            for name in names:
                mark = stamp(folder / name)
                if mark is not None:
                    found.append((folder, reference, name, mark))
        con = self._connect()
        rows: dict[tuple[str, str], tuple] = {}
        if con is not None:
            try:
                for folder, _ in folders:
                    for r in con.execute("SELECT id, stamp, pid, heartbeat, summary FROM runs "
                                         "WHERE folder = ?", (str(folder),)):
                        rows[(str(folder), r[0])] = r[1:]
            except sqlite3.OperationalError:
                rows = {}
            except sqlite3.DatabaseError as e:  # damaged beyond its header: start again
                con.close()
                con = self._rebuilt(str(e))
        out, redo = [], []
        for folder, reference, name, mark in found:
            row = rows.pop((str(folder), name), None)
            summary = None
            if row is not None and row[0] == mark:
                try:
                    summary = RunSummary.from_dict(json.loads(row[3]))
                    pid, heartbeat = row[1], row[2]
                except (TypeError, ValueError):
                    summary = None  # a row that does not read: made again below
            if summary is None:
                fresh = self._row(Run(folder / name, reference), mark)
                redo.append(fresh)
                summary, pid, heartbeat = RunSummary.from_dict(json.loads(fresh[5])), fresh[3], fresh[4]
            out.append(summary if reference else live_summary(summary, pid, heartbeat))
        if con is not None:
            try:
                if redo or rows:
                    with _transaction(con):
                        self._write(con, redo)
                        con.executemany("DELETE FROM runs WHERE folder = ? AND id = ?", list(rows))
            except sqlite3.Error:
                pass  # e.g. locked for longer than the timeout: the next listing does it
            finally:
                con.close()
        return out
