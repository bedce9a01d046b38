"""Incremental log reading (cifar_app/store/logreader.py) and the run store's use of it."""

from __future__ import annotations

import json
import os

import pytest

from cifar_app.core.records import BatchStats, EpochStats
from cifar_app.core.settings import TrainSettings
from cifar_app.store.logreader import LogCache, LogDamaged
from cifar_app.store.run import RunDamaged
from cifar_app.store.runstore import RunStore


def _line(kind: str, n: int, value: float = 1.0) -> str:
    return json.dumps({"kind": kind, "n": n, "v": value}) + "\n"


def _parse(obj: dict) -> tuple[str, int, float]:
    if "n" not in obj:
        raise ValueError("missing field 'n'")
    return obj["kind"], obj["n"], obj["v"]


def _read(cache: LogCache, path) -> dict:
    return cache.read(path, _parse, lambda kinds: kinds, dict)


def test_appended_lines_are_parsed_once(tmp_path):
    log, cache = tmp_path / "log.jsonl", LogCache()
    log.write_text(_line("a", 1) + _line("a", 2))
    assert _read(cache, log) == {"a": [1.0, 1.0]}
    with open(log, "a") as f:
        f.write(_line("a", 3, 3.0) + _line("b", 1, 5.0))
    assert _read(cache, log) == {"a": [1.0, 1.0, 3.0], "b": [5.0]}
    assert cache.parses(log) == 4  # not 2 + 4


def test_unchanged_log_is_not_read_or_parsed_again(tmp_path):
    log, cache = tmp_path / "log.jsonl", LogCache()
    log.write_text(_line("a", 1) + _line("a", 2))
    first = _read(cache, log)
    reads, parses = cache.reads, cache.parses(log)
    for _ in range(5):
        assert _read(cache, log) is first
    assert (cache.reads, cache.parses(log)) == (reads, parses)


def test_partial_last_line_waits_for_its_end(tmp_path):
    log, cache = tmp_path / "log.jsonl", LogCache()
    whole = _line("a", 2, 2.0)
    log.write_text(_line("a", 1) + whole[:7])
    assert _read(cache, log) == {"a": [1.0]}
    with open(log, "a") as f:
        f.write(whole[7:])
    assert _read(cache, log) == {"a": [1.0, 2.0]}
    assert cache.parses(log) == 2


def test_log_replaced_by_a_shorter_one_is_read_from_the_start(tmp_path):
    """A resume trims the log with an atomic rewrite (new inode); a shrink in place too."""
    log, cache = tmp_path / "log.jsonl", LogCache()
    log.write_text("".join(_line("a", i) for i in range(1, 6)))
    assert len(_read(cache, log)["a"]) == 5
    tmp = tmp_path / "new"
    tmp.write_text(_line("a", 1, 9.0) + _line("a", 2, 9.0))
    os.replace(tmp, log)
    assert _read(cache, log) == {"a": [9.0, 9.0]}
    with open(log, "r+") as f:  # truncated in place
        f.truncate(len(_line("a", 1, 9.0)))
    assert _read(cache, log) == {"a": [9.0]}


def test_rewritten_in_place_is_noticed(tmp_path):
    """Same inode, bigger file, different bytes before the old offset: not taken as an append."""
    log, cache = tmp_path / "log.jsonl", LogCache()
    log.write_text(_line("a", 1) + _line("a", 2))
    _read(cache, log)
    log.write_text(_line("a", 1, 7.0) + _line("a", 2, 7.0) + _line("a", 3, 7.0))
    assert _read(cache, log) == {"a": [7.0, 7.0, 7.0]}
    log.write_bytes(b"\x00garbage that is longer than the log it replaced\n" * 4)
    with pytest.raises(LogDamaged, match="line 1"):
        _read(cache, log)


def test_damaged_line_names_its_number_even_when_appended_later(tmp_path):
    log, cache = tmp_path / "log.jsonl", LogCache()
    log.write_text(_line("a", 1) + _line("a", 2))
    _read(cache, log)
    with open(log, "a") as f:
        f.write('{"kind": "a"}\n')
    with pytest.raises(LogDamaged, match=r"line 3: missing field 'n'"):
        _read(cache, log)
    with pytest.raises(LogDamaged, match="line 3"):  # still damaged on the next read
        _read(cache, log)
    with open(log, "ab") as f:
        f.write(b"\xff\xfe no newline")
    with pytest.raises(LogDamaged, match="last line"):
        _read(cache, log)


def test_out_of_order_and_repeated_records_keep_order_and_the_last_one(tmp_path):
    log, cache = tmp_path / "log.jsonl", LogCache()
    log.write_text(_line("a", 1) + _line("a", 3, 3.0) + _line("a", 2, 2.0) + _line("a", 3, 4.0))
    assert _read(cache, log) == {"a": [1.0, 2.0, 4.0]}


def test_results_are_not_changed_by_later_appends(tmp_path):
    log, cache = tmp_path / "log.jsonl", LogCache()
    log.write_text(_line("a", 1))
    first = _read(cache, log)
    with open(log, "a") as f:
        f.write(_line("a", 2))
    assert _read(cache, log) == {"a": [1.0, 1.0]} and first == {"a": [1.0]}


def test_missing_file_is_empty(tmp_path):
    assert LogCache().read(tmp_path / "none.jsonl", _parse, lambda k: k, dict) == {}


def test_run_metrics_follow_appends_resume_and_damage(tmp_path):
    store = RunStore(tmp_path)
    run = store.create(TrainSettings(epochs=2))
    run.append_metrics(BatchStats(1, 1, 1, 2, 2.3, 0.1, t=1.0), BatchStats(2, 1, 2, 2, 2.2, 0.1, t=2.0))
    assert [b.step for b in run.metrics().batches] == [1, 2]
    epoch = EpochStats(1, 2.0, 0.2, 2.1, 0.25, 3.0, 100.0, 0.1, 2.0)
    run.append_metrics(epoch, BatchStats(3, 2, 1, 2, 2.0, 0.1, t=4.0))
    m = run.metrics()
    assert [b.step for b in m.batches] == [1, 2, 3] and m.epochs == [epoch]
    run.restore_log(1, [epoch])  # what a resume does: the unfinished epoch 2 is dropped
    assert [b.step for b in run.metrics().batches] == [1, 2]
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"type": "batch", "step": "x"}\n')
    with pytest.raises(RunDamaged, match="metrics.jsonl: line 4"):
        run.metrics()
    assert store.get(run.id).summary().status == "damaged"
