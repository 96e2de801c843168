"""The demo's child processes: a restart reads its own output, not an earlier run's."""

from __future__ import annotations

import sys

from egi_notebooks.demo.processes import READY_LINE, start_announcing_provider


def announcer(issuer: str) -> list[str]:
    """A child that announces ``issuer`` as a provider does, then waits to be stopped."""
    code = f"import sys, time; print({READY_LINE + issuer!r}, flush=True); time.sleep(600)"
    return [sys.executable, "-c", code]


def test_a_second_start_with_the_same_log_reads_its_own_ready_line(tmp_path):
    log = tmp_path / "provider.log"
    first, issuer = start_announcing_provider(announcer("http://127.0.0.1:1111/x"), log, tmp_path)
    first.stop()
    assert issuer == "http://127.0.0.1:1111/x"
    second, issuer = start_announcing_provider(announcer("http://127.0.0.1:2222/x"), log, tmp_path)
    try:
        assert issuer == "http://127.0.0.1:2222/x"
        assert "1111" not in second.log()
    finally:
        second.stop()
    assert log.read_text().count(READY_LINE) == 2  # the log keeps both runs
