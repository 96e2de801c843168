"""The status service's metrics and page, rendered from a real history file."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from egi_notebooks.services.status.app import StatusApp, combine
from egi_notebooks.services.status.results import CRITICAL, OK, RunResult
from egi_notebooks.services.status.web import metrics_registry, render_metrics, render_page


@pytest.fixture
def app(tmp_path):
    a = StatusApp()
    a.initialize([f"--StatusApp.history_file={tmp_path / 'h.json'}", "--StatusApp.interval=600"])
    return a


def test_metrics_before_any_run_say_unknown(app):
    text = render_metrics(metrics_registry(app))
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["egi_notebooks_status"] == 3
    assert samples["egi_notebooks_status_running"] == 0


def test_metrics_after_runs(app):
    now = time.time()
    app.store.add(
        RunResult(now - 50, now - 40, CRITICAL, "spawn failed: x", {"spawn": 10.0}, "spawn")
    )
    app.store.add(
        RunResult(
            now - 20, now - 10, OK, "fine", {"user": 0.1, "spawn": 7.5, "execute": 0.3, "stop": 2.0}
        )
    )
    text = render_metrics(metrics_registry(app))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["egi_notebooks_status"].samples[0].value == 0
    phases = {
        s.labels["phase"]: s.value
        for s in families["egi_notebooks_status_phase_duration_seconds"].samples
    }
    assert phases == {"user": 0.1, "spawn": 7.5, "execute": 0.3, "stop": 2.0}
    runs = {
        s.labels["status"]: s.value
        for s in families["egi_notebooks_status_runs"].samples
        if s.name.endswith("_total")
    }
    assert runs == {"OK": 1, "WARNING": 0, "CRITICAL": 1}
    last = families["egi_notebooks_status_last_run_timestamp_seconds"].samples[0].value
    assert last == pytest.approx(now - 10, abs=0.01)
    promtool = shutil.which("promtool")
    if promtool:  # Prometheus' own linter, from the Debian package
        check = subprocess.run(
            [promtool, "check", "metrics"], input=text, text=True, capture_output=True, timeout=30
        )
        assert check.returncode == 0, check.stdout + check.stderr


def test_metrics_are_read_at_every_scrape_from_a_private_registry(app):
    registry = metrics_registry(app)
    now = time.time()
    app.store.add(RunResult(now - 5, now - 1, OK, "fine", {'odd"phase\\\n': 1.25}))
    families = {f.name: f for f in text_string_to_metric_families(render_metrics(registry))}
    phases = families["egi_notebooks_status_phase_duration_seconds"].samples
    # label values are escaped in the exposition and come back as they were
    assert [(s.labels, s.value) for s in phases] == [({"phase": 'odd"phase\\\n'}, 1.25)]
    assert families["egi_notebooks_status"].samples[0].value == 0
    # the process-wide registry (JupyterHub's and the client's own metrics) is left alone
    assert REGISTRY.get_sample_value("egi_notebooks_status") is None


def test_page_escapes_messages_and_shows_staleness(app):
    old = time.time() - 3 * 3600
    app.store.add(
        RunResult(
            old - 5,
            old,
            CRITICAL,
            "execute failed: <script>x</script>",
            {"execute": 1.0},
            "execute",
        )
    )
    page = render_page(app.store.current(app.interval), app)
    assert ">UNKNOWN</span>" in page and "3.0 h ago" in page
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_profiles_combine_into_the_worst_result():
    ok = RunResult(100, 110, OK, "fine (profile small)", {"spawn": 5.0}, None, "small")
    bad = RunResult(
        110, 130, CRITICAL, "kernel failed (profile gpu): x", {"kernel": 2.0}, "kernel", "gpu"
    )
    result = combine([ok, bad])
    assert (result.status, result.phase, result.profile) == (CRITICAL, "kernel", "gpu")
    assert result.phases == {"small:spawn": 5.0, "gpu:kernel": 2.0}
    assert (result.started, result.finished) == (100, 130)
    assert "profile gpu" in result.message and "profile small" in result.message


def test_unknown_phase_in_timeouts_is_refused_at_start_up(tmp_path, capsys):
    app = StatusApp()
    with pytest.raises(SystemExit):
        app.initialize(
            [f"--StatusApp.history_file={tmp_path / 'h.json'}", "--StatusApp.timeouts=spwan=5"]
        )
    # the Application's own log handler writes to stderr: one line naming the trait
    assert "StatusApp.timeouts: unknown phases ['spwan']" in capsys.readouterr().err
