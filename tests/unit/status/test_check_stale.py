"""check-status: a result is stale after a maximum age even when the body names no interval."""

from __future__ import annotations

import time

import pytest

from egi_notebooks.services.status.check import DEFAULT_MAX_AGE, evaluate, parse_args

from .test_check import FakeStatusService, run_check

NOW = 2_000_000_000.0


def body(age: float, **extra) -> dict:
    return {"code": "OK", "msg": "fine", "time": NOW - age, **extra}


def test_without_interval_the_default_maximum_age_applies():
    assert DEFAULT_MAX_AGE == 7200  # 2 x the status service's default interval (3600 s)
    assert evaluate(body(100), now=NOW)[0] == 0
    code, line = evaluate(body(DEFAULT_MAX_AGE + 60), now=NOW)
    assert code == 3 and line.startswith("UNKNOWN - stale result")


@pytest.mark.parametrize("interval", [None, 0, "", "soon", -5])
def test_missing_or_unusable_interval_falls_back_to_the_default(interval):
    code, line = evaluate(body(10 * 86400, interval=interval), now=NOW)
    assert code == 3 and "stale result" in line


def test_interval_in_the_body_still_wins_and_max_age_beats_both():
    assert evaluate(body(5000, interval=60), now=NOW)[0] == 3  # 2 x 60 s
    assert evaluate(body(20000, interval=86400), now=NOW)[0] == 0  # 2 x 1 day
    assert evaluate(body(5000, interval=86400), max_age=60, now=NOW)[0] == 3
    assert evaluate(body(20000), default_max_age=86400, now=NOW)[0] == 0


def test_a_verdict_without_a_time_is_not_trusted():
    code, line = evaluate({"code": "OK", "msg": "fine"}, now=NOW)
    assert code == 3 and "no time" in line
    # The service's own "no run yet" answer carries no time and stays UNKNOWN as it is.
    assert evaluate({"code": "UNKNOWN", "msg": "no probe run yet"}, now=NOW) == (
        3,
        "UNKNOWN - no probe run yet",
    )


def test_command_line_option(capsys):
    assert parse_args(["http://x/"]).default_max_age == DEFAULT_MAX_AGE
    assert parse_args(["http://x/", "--default-max-age", "60"]).default_max_age == 60
    service = FakeStatusService()
    try:
        service.json(code="OK", msg="fine", time=time.time() - 600)
        assert run_check(capsys, service.url)[0] == 0
        code, out = run_check(capsys, service.url, "--default-max-age", "300")
        assert code == 3 and "stale result" in out
    finally:
        service.server.shutdown()
        service.server.server_close()
