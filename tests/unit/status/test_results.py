"""Status rules and the on-disk history of the status service."""

from __future__ import annotations

import json

from egi_notebooks.services.status.results import (
    CRITICAL,
    OK,
    UNKNOWN,
    WARNING,
    ResultStore,
    RunResult,
    grade,
)


def run(finished: float, status: str = OK, **kw) -> RunResult:
    return RunResult(finished - 10, finished, status, kw.pop("message", "m"), **kw)


def test_no_run_yet_is_unknown(tmp_path):
    status = ResultStore(tmp_path / "h.json").current(3600, now=1000)
    assert status["code"] == UNKNOWN and status["exit_code"] == 3
    assert status["msg"] == "no probe run yet"


def test_fresh_result_is_reported_until_twice_the_interval():
    store = ResultStore(None)
    store.add(run(10_000, CRITICAL, message="spawn failed: boom", phase="spawn"))
    status = store.current(3600, now=10_000 + 7200)
    assert (status["code"], status["msg"], status["time"]) == (
        CRITICAL,
        "spawn failed: boom",
        10_000,
    )
    stale = store.current(3600, now=10_000 + 7201)
    assert stale["code"] == UNKNOWN and stale["exit_code"] == 3
    assert "stale" in stale["msg"] and "CRITICAL: spawn failed: boom" in stale["msg"]


def test_slow_phase_is_warning_naming_it():
    status, phase, message = grade({"spawn": 12.0, "execute": 0.2}, {"spawn": 10, "execute": 5})
    assert (status, phase) == (WARNING, "spawn")
    assert "spawn took 12.0s > 10s" in message
    status, phase, message = grade({"spawn": 2.0, "execute": 0.2}, {"spawn": 10, "total": 2})
    assert (status, phase) == (WARNING, "total")
    assert grade({"spawn": 2.0}, {"spawn": 10})[0] == OK


def test_restart_keeps_history_and_counts(tmp_path):
    path = tmp_path / "sub" / "history.json"
    store = ResultStore(path, max_runs=3)
    for i in range(5):
        store.add(run(1000 + i, OK if i % 2 else CRITICAL, phases={"spawn": float(i)}))
    again = ResultStore(path, max_runs=3)
    assert [r.finished for r in again.runs] == [1002, 1003, 1004]
    assert again.last.phases == {"spawn": 4.0}
    # counters are monotonic across restarts (Prometheus counters), not just the kept runs
    assert again.counts == {CRITICAL: 3, OK: 2}
    assert not list(path.parent.glob(".status-*"))  # no temporary file left behind


def test_damaged_history_is_ignored_and_kept(tmp_path, caplog):
    path = tmp_path / "history.json"
    path.write_text('{"runs": [{"started": "x"')
    store = ResultStore(path)
    assert store.last is None
    assert "unreadable status history" in caplog.text
    assert path.read_text() == '{"runs": [{"started": "x"'  # left for inspection
    store.add(run(5000))
    assert json.loads(path.read_text())["runs"][0]["finished"] == 5000


def test_unwritable_history_does_not_lose_the_result(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = ResultStore(blocker / "history.json")  # parent is a file: cannot be created
    store.add(run(5000))
    assert store.current(3600, now=5001)["code"] == OK
    assert "could not save status history" in caplog.text
