"""`egi-notebooks accounting report` on the command line; bad server models are skipped."""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime

from egi_notebooks.services.accounting.collector import Collector
from egi_notebooks.services.accounting.store import Observation, Store, make_vmuuid

DAY = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())


def run_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "egi_notebooks.cli", "accounting", "report", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def report(capsys, *args: str) -> str:
    from egi_notebooks.services.accounting.app import main

    capsys.readouterr()
    main(["report", *args])
    return capsys.readouterr().out


def test_report_csv_and_json(database_url, sessions, capsys):
    store = Store(sessions)
    for user, vo, start in [("alice", "vo.a", DAY + 3600), ("bob", "vo.b", DAY + 7200)]:
        store.apply_poll(
            [Observation(make_vmuuid("t", user, "", start), user, "", start, vo, cpu_request=2)],
            start + 1800,
        )
    store.apply_poll([], DAY + 86400 * 2)
    out = report(capsys, "--from=2026-03-01", "--to=2026-03-01", f"--db-url={database_url}")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["vo"], r["user"], r["wall_hours"], r["cpu_hours"]) for r in rows] == [
        ("vo.a", "alice", "0.5", "1.0"),
        ("vo.b", "bob", "0.5", "1.0"),
    ]
    out = report(capsys, "--from=2026-03-02", "--format=json", f"--db-url={database_url}")
    assert json.loads(out) == []
    out = report(capsys, "--from=2026-03-01", "--by-vo", f"--db-url={database_url}")
    assert [r["vo"] for r in csv.DictReader(io.StringIO(out))] == ["vo.a", "vo.b"]


def test_report_bad_dates_are_explained(tmp_path):
    out = run_report("--from=yesterday", f"--db-url=sqlite:///{tmp_path / 'x.sqlite'}")
    assert out.returncode == 2
    assert "--from must be a date like 2026-11-05" in out.stderr


def test_bad_server_models_are_logged_and_skipped(caplog):
    collector = Collector(hub_id="t")
    now = DAY
    user = {"name": "alice", "groups": []}
    with caplog.at_level(logging.WARNING):
        assert collector.observation(user, {"name": "", "started": None}, now) is None
        assert collector.observation(user, {"name": "", "started": "garbage"}, now) is None
        future = datetime.fromtimestamp(now + 3600, UTC).isoformat()
        assert collector.observation(user, {"name": "", "started": future}, now) is None
    assert "without a valid start time" in caplog.text and "clock skew" in caplog.text
    # a little skew is tolerated and clamped: the session cannot start after "now"
    near = datetime.fromtimestamp(now + 30, UTC).isoformat()
    assert collector.observation(user, {"name": "", "started": near}, now).start_time == now
    # garbage types inside the model do not break anything
    obs = collector.observation(
        user,
        {"name": "x", "started": "2026-03-01T00:00:00Z", "user_options": "??", "state": [1]},
        now,
    )
    assert obs.primary_vo is None and obs.flavor == "default"


def test_probe_group_and_excluded_users():
    collector = Collector(excluded_users=["svc"])
    assert collector.is_excluded({"name": "p", "groups": ["egi-notebooks-probe"]})
    assert collector.is_excluded({"name": "svc", "groups": []})
    assert not collector.is_excluded({"name": "alice", "groups": ["vo.a"]})


def test_primary_vo_from_spawner_annotation_then_groups_never_auth_state():
    collector = Collector(hub_id="t", vo_priority=["vo.b"], default_vo="vo.default")
    started = {"name": "", "started": "2026-03-01T00:00:00Z"}
    annotated = {**started, "state": {"annotations": {"egi.eu/primary-vo": "vo.pod"}}}
    two = {"name": "u", "groups": ["vo.a", "vo.b", "egi-notebooks-probe"]}
    assert collector.observation(two, annotated, DAY * 400).primary_vo == "vo.pod"
    assert collector.observation(two, started, DAY * 400).primary_vo == "vo.b"
    one = {"name": "u", "groups": ["vo.only"]}
    assert collector.observation(one, started, DAY * 400).primary_vo == "vo.only"
    # several groups, none preferred: no guess, the configured default
    many = {"name": "u", "groups": ["vo.x", "vo.y"]}
    assert collector.observation(many, started, DAY * 400).primary_vo == "vo.default"
