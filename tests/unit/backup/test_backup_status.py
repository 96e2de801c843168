"""Backup status: the Nagios check's exit codes, and the status service's backup.json and
metrics, from the status file of a real backup run."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpserver import HTTPServer

from egi_notebooks.backup.status import save
from egi_notebooks.services.status.app import StatusApp
from egi_notebooks.services.status.backup import add_backup_status
from egi_notebooks.services.status.web import make_web_app
from tests.harness.ports import free_port

from .conftest import PASSWORD, make_home

DAY = 86400


def check(status_file, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "egi_notebooks.cli", "backup", "check",
         f"--BackupApp.status_file={status_file}", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def status_with(tmp_path, **ages: float | None):
    now = time.time()
    volumes = {
        f"claim-{user}": {"claim": f"claim-{user}", "user": user,
                          "last_success": None if age is None else now - age * DAY,
                          "last_error": None if age is not None else "boom"}
        for user, age in ages.items()
    }  # fmt: skip
    path = tmp_path / "status.json"
    save(str(path), {"version": 1, "volumes": volumes, "last_run": {"finished": now}})
    return path


def test_nagios_check_exit_codes(tmp_path):
    ok = check(status_with(tmp_path, alice=0.1, bob=0.5))
    assert (ok.returncode, ok.stdout.split(" - ")[0]) == (0, "BACKUP OK"), ok.stdout
    warning = check(status_with(tmp_path, alice=0.1, bob=1.5))
    assert warning.returncode == 1 and "bob" in warning.stdout
    critical = check(status_with(tmp_path, alice=0.1, bob=4))
    assert critical.returncode == 2
    # the number of days is configured
    relaxed = check(status_with(tmp_path, alice=0.1, bob=4), "--critical-days", "7")
    assert relaxed.returncode == 1
    assert check(status_with(tmp_path, alice=0.1, bob=None)).returncode == 2  # never backed up
    # no run recorded yet, or a broken file: UNKNOWN, never a traceback
    assert check(tmp_path / "none.json").returncode == 3
    (tmp_path / "broken.json").write_text("{not json")
    broken = check(tmp_path / "broken.json")
    assert broken.returncode == 3 and broken.stdout.startswith("BACKUP UNKNOWN")
    assert "|" in ok.stdout and "oldest_age=" in ok.stdout  # performance data


async def test_status_service_serves_backup_json_and_metrics(setup):
    make_home(setup.homes / "claim-alice", "alice", large=1024)
    make_home(setup.homes / "claim-bob", "bob", large=1024)
    done = setup.run()
    assert done.returncode == 0, done.stderr

    port = free_port()
    app = StatusApp()
    app.initialize([
        f"--StatusApp.history_file={setup.root / 'h.json'}",
        f"--StatusApp.service_url=http://127.0.0.1:{port}",
        "--StatusApp.service_prefix=/services/status/",
        "--StatusApp.api_token=unused", "--StatusApp.hub_api_url=http://127.0.0.1:9/hub/api",
        f"--BackupStatus.status_file={setup.status_file}",
        "--BackupStatus.metrics_per_user=True",
    ])  # fmt: skip
    web_app = make_web_app(app)
    assert add_backup_status(web_app, app, app.service_prefix)
    server = HTTPServer(web_app)
    server.listen(port, "127.0.0.1")
    base = f"http://127.0.0.1:{port}/services/status/"
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            report = (await client.get(base + "backup.json")).json()
            # a token the hub cannot confirm (the hub is down here) sees no volumes either
            with_token = await client.get(
                base + "backup.json", headers={"Authorization": "token whatever"}
            )
            metrics = (await client.get(base + "backup/metrics")).text
            probe = await client.get(base + "status.json")
    finally:
        server.stop()
    assert report["status"] == "OK" and report["code"] == 0
    assert report["volumes_total"] == 2 and report["volumes_failed"] == 0
    assert "volumes" not in report and "volumes" not in with_token.json()
    assert probe.status_code == 200  # the probe's own routes are unchanged
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    assert families["egi_notebooks_backup"].samples[0].value == 0
    assert families["egi_notebooks_backup_volumes"].samples[0].value == 2
    per_user = {
        s.labels["user"]: s.value
        for s in families["egi_notebooks_backup_last_success_timestamp_seconds"].samples
    }
    status = json.loads(setup.status_file.read_text())
    assert per_user == {
        "alice": round(status["volumes"]["claim-alice"]["last_success"], 3),
        "bob": round(status["volumes"]["claim-bob"]["last_success"], 3),
    }
    assert PASSWORD not in metrics + json.dumps(report)


def test_per_volume_report_for_admins(setup):
    from egi_notebooks.services.status.backup import BackupStatus

    status_file = status_with(setup.root, alice=0.1, bob=None)
    backup = BackupStatus(status_file=str(status_file))
    report = backup.report(per_volume=True)
    assert report["status"] == "CRITICAL"
    by_user = {v["user"]: v for v in report["volumes"]}
    assert by_user["bob"]["last_error"] == "boom" and by_user["bob"]["state"] == "CRITICAL"
    assert by_user["alice"]["state"] == "OK"
