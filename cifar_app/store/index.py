"""The run index: every run's summary in one SQLite table in the runs folder, so that listing
10,000 runs reads one table, not 10,000 metrics logs.

The run folders stay the truth; the index is a cache that can always be rebuilt from them:

- each row keeps the *stamp* of the files its summary was made from (settings, status, metrics log
  and model: device, inode, size, mtime and ctime, taken before they were read), and the version
  of the code that summarized it. A listing stats those files; a run whose stamp changed since its
  row (a worker's epoch, a rename, a file edited by hand) is summarized again, alone. A folder
  without a row is added; a row without a folder is dropped. A stamp whose files changed in the
  last ``RACY_S`` seconds is stored as one that matches nothing (git's "racily clean" rule): a
  same-size rewrite within one tick of a file system's coarse timestamps cannot hide behind it
  (the row is redone at the next listing);
- whether a run has probe records (``inside.jsonl``) is kept with its summary but not stamped: the
  recorder writes the first record (the initial weights) before the first epoch ends, so every
  row of a new run written at an epoch's end has it (a run resumed from a checkpoint made before
  probe records existed gets its first just after that epoch's row: the next row, at the next
  epoch or at any listing after its log has grown, has it); a probe log emptied by hand
  afterwards is found when the Inside page reads it;
- the summary is kept as the files say it, before the liveness check: the state of an active run
  depends on whether its process lives, so that check is made at every listing from the row's pid
  and heartbeat (``run.live_summary``), without reading the folder;
- a process that lists again and again (the dashboard's store: ``recheck_s``) keeps what it
  listed in memory: a run that is not active and whose status file is as its stamp saw it is
  listed as it was, for at most ``recheck_s`` between full checks; a folder whose stat did not move
  is not scanned again; the table is read only for the runs that changed;
- the recorder writes its run's row at each epoch end and state change, under the run's status
  lock; it waits at most ``PUT_WAIT_S`` for the index (a listing writing at that moment), and
  skips the write rather than hold up training: the next listing sees the files changed;
- a deleted index is rebuilt; a damaged one (not a database, a foreign layout) is removed and
  rebuilt under a lock, with a message (``RunIndex.notice``). Nothing is lost: the rows come from
  the folders. A store that cannot be written (a read-only folder), an index of a newer version of
  the app, or a runs folder on a network file system where SQLite's locks fail, is listed from the
  folders, as before.

SQLite in WAL mode lets readers go on while a worker writes; every write is one transaction, so a
writer killed mid-update leaves the previous rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat as stat_
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from cifar_app.core.settings import valid_run_id
from cifar_app.store.fileio import StoreError, file_lock
from cifar_app.store.formats import INDEX, METRICS, MODEL, RUN_FILES, SETTINGS, STATUS
from cifar_app.store.run import Run, RunSummary, live_summary
from cifar_app.store.states import ACTIVE

SCHEMA_VERSION = 1   # the table's layout
SUMMARY_VERSION = 2  # how a summary is made: bump with any change to Run.raw_summary or what it uses
RACY_S = 0.05  # ten times ext4's coarse timestamp tick (4 ms on kernels without fine-grained ones)
_STAMPED = (SETTINGS, STATUS, METRICS, MODEL)  # the files a summary is made from
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    folder    TEXT NOT NULL,     -- '' for the runs folder's own runs, else the reference folder's real path
    id        TEXT NOT NULL,
    stamp     TEXT NOT NULL,     -- see stamp()
    live      TEXT NOT NULL,     -- [pid, heartbeat] from status.json as written, for the liveness check
    summary   TEXT NOT NULL,     -- RunSummary.as_dict() as JSON, before the liveness check
    PRIMARY KEY (folder, id)
) WITHOUT ROWID
"""
LIST_WAIT_S = 10.0  # a listing waits this long for a writer
PUT_WAIT_S = 0.25   # the recorder, under the run's status lock, no longer
ROW_QUERIES = 64  # a listing that needs more rows than this reads the whole table
LOCK = ".index.lock"  # held while a damaged index is removed and made again


def stamp(folder: Path | str, now: float | None = None) -> str | None:
    """The stamp of a run folder's summary files, with the summary code's version; None when none
    of ``RUN_FILES`` is a file there (not a run folder). When a file changed less than ``RACY_S``
    ago (or in the future), a stamp no later one equals: the row is redone at the next listing."""
    now = time.time() if now is None else now
    parts, found, racy = [f"v{SUMMARY_VERSION}"], False, False
    base = os.fspath(folder)
    for name in _STAMPED:
        try:
            st = os.stat(f"{base}/{name}")
        except OSError:
            parts.append("-")
            continue
        if not stat_.S_ISREG(st.st_mode):
            parts.append("?")
            continue
        found = found or name in RUN_FILES
        racy = racy or abs(now - st.st_mtime) < RACY_S or abs(now - st.st_ctime) < RACY_S
        parts.append(_file_part(st))
    if not found:
        return None
    return "|".join(parts) + (f"|racy:{os.urandom(6).hex()}" if racy else "")


def _nonce() -> int:
    """A new index file's ``application_id``: a listing that remembers its rows (``recheck_s``)
    knows from it (header bytes 68-71) that the file was made again, even under the same inode."""
    return 1 + int.from_bytes(os.urandom(4), "big") % (2**31 - 1)


def _file_part(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


_STATUS_PART = 1 + _STAMPED.index(STATUS)  # where a stamp has the status file (after the version)


def _status_stat(mark: str) -> tuple | None:
    """The stat of the status file that a stamp records, as ``_status_now`` gives it (None: none)."""
    part = mark.split("|")[_STATUS_PART]
    return tuple(int(x) for x in part.split(":")) if part not in ("-", "?") else None


def _status_now(path: str) -> tuple | None:
    """The stat of a run's status file now, as ``_status_stat`` reads it from a stamp."""
    try:
        st = os.stat(f"{path}/{STATUS}")
    except OSError:
        return None
    if not stat_.S_ISREG(st.st_mode):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


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


def _trusted(row: tuple | None, mark: str | None, name: str, reference: bool) -> tuple | None:
    """(summary, pid, heartbeat) of a row (stamp, live, summary) whose stamp is ``mark`` and that
    reads as this run's; None when it is to be made again (changed files, or any row that does not
    read: hostile content, another run's id)."""
    if row is None or mark is None or row[0] != mark:
        return None
    try:
        summary = RunSummary.from_dict(json.loads(row[2]))
        pid, heartbeat = json.loads(row[1])
    except Exception:  # noqa: BLE001
        return None
    if summary.id != name or summary.reference != reference:
        return None
    return summary, pid, heartbeat


@dataclass(frozen=True)
class _Seen:
    """A run as this index object last listed it."""

    mark: str                # its stamp, checked against its files at ``checked``
    status: tuple | None     # the status file's stat in that stamp (taken before it was read)
    summary: RunSummary      # before the liveness check
    pid: object
    heartbeat: object
    checked: float           # time.monotonic()


class RunIndex:
    """The index file of one runs folder (``root / INDEX``); rows for that folder's runs and for
    the reference runs listed with them.

    Args:
        root: the runs folder. Nothing is created while it does not exist.
        recheck_s: for an object that lists again and again (the dashboard's): between two listings
            less than this apart, a run that is not active and whose status file did not change is
            listed as last seen, without stamping its other files, and a folder whose mtime did not
            change is not scanned again. So a state or label change, a new or removed run, and an
            active run's epochs are seen at once; an edit by hand of a finished run's settings,
            log or model within ``recheck_s`` (on a local file system with fine or 4 ms
            timestamps: see ``RACY_S``). 0 (the default, the CLI's): every listing checks every
            file.
    """

    def __init__(self, root: Path | str, recheck_s: float = 0.0) -> None:
        self.root = Path(root)
        self.path = self.root / INDEX
        self.recheck_s = recheck_s
        self.notice: str | None = None  # set when a damaged index was rebuilt, until a caller takes it
        self._lock = threading.Lock()  # one listing at a time (a server's sessions share this object)
        self._synced: tuple | None = None  # the index file (``_identity``) holding every row this knows
        self._seen: dict[tuple[str, str], _Seen] = {}  # (folder key, id) -> what the last listing saw
        self._scans: dict[str, tuple[tuple, float, list[str]]] = {}  # folder key -> (stat, when, names)

    def _key(self, folder: Path) -> str:
        """How rows name the folder a run is in: '' for the runs folder itself (however its path is
        spelled), the real path of a reference folder."""
        return "" if Path(folder) == self.root else os.path.realpath(folder)

    # ------------------------------------------------------------------ connection
    def _connect(self, wait_s: float = LIST_WAIT_S) -> sqlite3.Connection | None:
        """An open, checked connection; None when the index cannot be used here (no runs folder,
        a read-only one, a newer app's index). A damaged file is removed and made again, under a
        lock, with ``notice`` set."""
        if not self.root.is_dir():
            return None
        for attempt in (1, 2):
            con = None
            try:
                con = sqlite3.connect(self.path, timeout=wait_s, isolation_level=None)
                con.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: safe when a process dies
                version = con.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    con.close()
                    return None  # a newer app's index: list from the folders, leave it as it is
                if version < SCHEMA_VERSION:
                    self._create(con)
                con.execute("SELECT folder, id, stamp, live, summary FROM runs LIMIT 1").fetchall()
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
            if attempt == 2 or not self._remove(reason):
                return None
        return None  # pragma: no cover

    def _create(self, con: sqlite3.Connection) -> None:
        con.execute("PRAGMA journal_mode=WAL")
        with _transaction(con):
            if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                con.execute("DROP TABLE IF EXISTS runs")
                con.execute(_SCHEMA)
                con.execute(f"PRAGMA application_id={_nonce()}")  # which index file this is
                con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _remove(self, reason: str) -> bool:
        """Remove a damaged index (under ``LOCK``, so two processes do not remove each other's new
        one: the second finds it healthy and keeps it)."""
        try:
            with file_lock(self.root / LOCK):
                try:
                    with contextlib.closing(sqlite3.connect(self.path, timeout=1.0)) as con:
                        healthy = con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
                        con.execute("SELECT folder, id, stamp, live, summary FROM runs LIMIT 1").fetchall()
                        if healthy and con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                            return True  # made again by another process meanwhile
                except sqlite3.Error:
                    pass
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        except (OSError, StoreError):
            return False
        self.notice = (f"the run index {self.path} was damaged ({reason}); it was rebuilt from the "
                       "run folders, and no run was lost")
        return True

    def _rebuilt(self, reason: str) -> sqlite3.Connection | None:
        """Remove a damaged index and open a new one (None when that fails)."""
        return self._connect() if self._remove(reason) else None

    # ------------------------------------------------------------------ writing one run
    def put(self, run: Run) -> None:
        """Summarize ``run`` from its files and store its row (the recorder calls this under the
        run's status lock at each epoch end and state change). The row is made before the index
        is locked; the index is waited for at most ``PUT_WAIT_S``. A failure leaves the row as it
        was: the next listing sees the files changed and redoes it."""
        row = self._row(run)
        con = self._connect(PUT_WAIT_S)
        if con is None:
            return
        try:
            with _transaction(con):
                self._write(con, [row])
        except sqlite3.Error:
            pass
        finally:
            con.close()

    def _row(self, run: Run, known_stamp: str | None = None) -> tuple:
        mark = known_stamp or stamp(run.path) or "-"  # taken before the files are read
        summary, st = run.raw_summary()
        return (self._key(run.path.parent), run.id, mark, json.dumps([st.get("pid"), st.get("heartbeat")]),
                json.dumps(summary.as_dict()))

    @staticmethod
    def _write(con: sqlite3.Connection, rows: Iterable[tuple]) -> None:
        con.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?)", rows)

    # ------------------------------------------------------------------ one run
    def summary(self, run: Run) -> RunSummary:
        """``run``'s summary through its row (made again, and stored, when its files changed):
        what a list of a few runs (an experiment's points) reads instead of their logs."""
        mark = stamp(run.path)
        key = self._key(run.path.parent)
        con = self._connect()
        summary = None
        try:
            if con is not None and mark is not None:
                row = con.execute("SELECT stamp, live, summary FROM runs WHERE folder = ? AND id = ?",
                                  (key, run.id)).fetchone()
                if (kept := _trusted(row, mark, run.id, run.reference)) is not None:
                    summary, pid, heartbeat = kept
            if summary is None:
                fresh = self._row(run, mark)
                summary = RunSummary.from_dict(json.loads(fresh[4]))
                pid, heartbeat = json.loads(fresh[3])
                if con is not None and mark is not None:
                    with _transaction(con):
                        self._write(con, [fresh])
        except sqlite3.Error:
            if summary is None:
                return run.summary()
        finally:
            if con is not None:
                con.close()
        return summary if run.reference else live_summary(summary, pid, heartbeat)

    # ------------------------------------------------------------------ listing
    def summaries(self, folders: list[tuple[Path, bool]]) -> list[RunSummary]:
        """Every run in ``folders`` ((folder, reference) pairs), in their order; each folder's runs
        newest first for user runs, in name order for reference runs. Rows are redone for runs
        changed since, added for new folders and dropped for gone ones (and for folders no longer
        listed, whenever the whole table is read). With ``recheck_s``, this object keeps what it
        listed (``_seen``): a run it last saw with the same stamp (or, when quiet, the same status
        file) is not looked up in the table again, and the table is read whole only until every
        row it knows is in the file (again after a failed write or a new index file)."""
        with self._lock:
            return self._summaries(folders)

    def _summaries(self, folders: list[tuple[Path, bool]]) -> list[RunSummary]:
        now, tick = time.time(), time.monotonic()  # wall time for file times, monotonic for ages
        remember = self.recheck_s > 0
        ident = self._identity() if remember else None
        whole = not remember or self._synced is None or ident != self._synced  # read the whole table
        found: list[tuple[Path, str, bool, str, str]] = []  # (folder, key, reference, id, stamp)
        kept: dict[tuple[str, str], tuple[RunSummary, object, object]] = {}
        for folder, reference in folders:
            key, base = self._key(folder), os.fspath(folder)
            for name in self._names(folder, key, reference, now, tick):
                seen = self._seen.get((key, name)) if remember else None
                if seen is not None and self._quiet(seen, f"{base}/{name}", tick):
                    found.append((folder, key, reference, name, seen.mark))
                    kept[(key, name)] = seen.summary, seen.pid, seen.heartbeat
                    continue
                mark = stamp(f"{base}/{name}", now)
                if mark is None:
                    continue
                found.append((folder, key, reference, name, mark))
                if seen is not None and seen.mark == mark:
                    kept[(key, name)] = seen.summary, seen.pid, seen.heartbeat
                    self._seen[(key, name)] = replace(seen, checked=tick)
        listed = {(key, name) for _, key, _, name, _ in found}
        gone = [k for k in self._seen if k not in listed]
        wanted = [(key, name) for _, key, _, name, _ in found if (key, name) not in kept]
        whole = whole or len(wanted) > ROW_QUERIES
        rows: dict[tuple[str, str], tuple] = {}
        con = None
        if whole or wanted or gone:
            notice = self.notice
            con = self._connect()
            whole = whole or self.notice is not notice  # a damaged file was made again: fill it
        if con is not None:
            try:
                if whole:
                    for r in con.execute("SELECT folder, id, stamp, live, summary FROM runs"):
                        rows[(r[0], r[1])] = r[2:]
                else:
                    for k in wanted:
                        r = con.execute("SELECT stamp, live, summary FROM runs WHERE folder = ? AND id = ?",
                                        k).fetchone()
                        if r is not None:
                            rows[k] = r
            except sqlite3.OperationalError:
                rows = {}
            except sqlite3.DatabaseError as e:  # damaged beyond its header: start again
                con.close()
                con, rows, whole = self._rebuilt(str(e)), {}, True
        out, redo = [], []
        for folder, key, reference, name, mark in found:
            got = kept.get((key, name))
            if got is None:
                got = _trusted(rows.pop((key, name), None), mark, name, reference)
                if got is None:
                    fresh = self._row(Run(folder / name, reference), mark)
                    redo.append(fresh)
                    got = RunSummary.from_dict(json.loads(fresh[4])), *json.loads(fresh[3])
                if remember:
                    self._seen[(key, name)] = _Seen(mark, _status_stat(mark), *got, tick)
            else:  # as last seen; a row the table lacks (a new index file) is written from here
                row = rows.pop((key, name), None)
                if whole and (row is None or row[0] != mark):
                    redo.append((key, name, mark, json.dumps(list(got[1:])), json.dumps(got[0].as_dict())))
            summary, pid, heartbeat = got
            out.append(summary if reference else live_summary(summary, pid, heartbeat))
        for k in gone:
            del self._seen[k]
        stale = list(rows) if whole else [k for k in gone if k not in rows]
        synced = False
        if con is not None:
            try:
                if redo or stale:
                    with _transaction(con):
                        self._write(con, redo)
                        con.executemany("DELETE FROM runs WHERE folder = ? AND id = ?", stale)
                synced = True
            except sqlite3.Error:
                pass  # e.g. locked for longer than the timeout: the next listing does it
            finally:
                con.close()
        if remember:  # every row this object knows is in the file: later listings need only theirs
            if synced and (whole or self._synced is not None):
                self._synced = self._identity()
            elif con is not None or whole:
                self._synced = None  # read it whole (and write what it lacks) next time
        return out

    def _identity(self) -> tuple | None:
        """Which index file is there (None: none): its device, inode and creation nonce (header
        bytes 68-71, ``_nonce``), so one made again, even under the same inode, is told apart."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                header = f.read(72)
        except OSError:
            return None
        return st.st_dev, st.st_ino, header[68:72]

    def _names(self, folder: Path, key: str, reference: bool, now: float, tick: float) -> list[str]:
        """The names of the run folders in ``folder``, in listing order. With ``recheck_s`` the
        last scan is kept while the folder's own stat (which any folder made, removed or renamed
        in it moves) stays as it was, for at most ``recheck_s``; a scan made while the folder's
        mtime was racy (within ``RACY_S`` of the scan) is not kept: a folder made in the same
        timestamp tick would not move it."""
        try:
            st = os.stat(folder)
        except OSError:
            return []
        mark = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        last = self._scans.get(key)
        if (self.recheck_s > 0 and last is not None and last[0] == mark
                and 0 <= tick - last[1] < self.recheck_s):
            return last[2]
        try:
            names = [e.name for e in os.scandir(folder) if valid_run_id(e.name) and e.is_dir()]
        except OSError:
            return []
        names.sort(reverse=not reference)
        if self.recheck_s > 0:
            if abs(now - st.st_mtime) >= RACY_S and abs(now - st.st_ctime) >= RACY_S:
                self._scans[key] = (mark, tick, names)
            else:
                self._scans.pop(key, None)
        return names

    def _quiet(self, seen: _Seen, path: str, tick: float) -> bool:
        """Whether a run last seen as ``seen`` can be listed without stamping its files: within
        ``recheck_s`` of its last full check, not active (an active run's log and model change
        without its status), its last stamp was not racy, and its status file is the one that
        stamp saw (every change of state or label, from any process, rewrites that file)."""
        return (0 <= tick - seen.checked < self.recheck_s and seen.status is not None
                and "|racy:" not in seen.mark and seen.summary.status not in ACTIVE
                and _status_now(path) == seen.status)
