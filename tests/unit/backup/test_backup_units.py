"""The pure parts: claim naming, tags, directory shapes, error kinds, redaction, choosing a
snapshot; and VO shared claims with the real restic."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from egi_notebooks.backup.restic import Restic, classify
from egi_notebooks.backup.restore import RestoreError, Snapshot, choose, parse_time
from egi_notebooks.backup.volumes import (
    claim_name,
    mounted_claims,
    select_volumes,
    slug_username,
    tag,
    tag_values,
)
from egi_notebooks.spawner.names import user_slug

from .conftest import make_home


def test_claim_names_are_egispawners():
    assert claim_name("alice") == "claim-alice"
    assert claim_name("Bøb, Jr.") == f"claim-{user_slug('Bøb, Jr.')}"
    assert slug_username("claim-alice") == "alice"
    assert slug_username(claim_name("Bøb, Jr.")) is None  # a hash cannot be reversed
    assert slug_username("other-alice") is None


def test_tags_survive_commas_and_percent_signs():
    tags = [tag("user", "a,b%2C"), tag("claim", "claim-x")]
    assert "," not in tags[0]
    assert tag_values(tags) == {"user": "a,b%2C", "claim": "claim-x"}


def test_claim_directories_by_template(tmp_path):
    for name in ("ns-claim-alice-pvc-1234", "ns-claim-bob-pvc-99", "other-claim-carol-pvc-1",
                 "ns-hub-db-dir-pvc-5", "claim-dave"):  # fmt: skip
        (tmp_path / name).mkdir()
    (tmp_path / "ns-claim-eve-pvc-7").write_text("a file, not a volume")
    found = mounted_claims(str(tmp_path), "{namespace}-{claim}-pvc-*", namespace="ns")
    assert sorted(found) == ["claim-alice", "claim-bob"]
    assert sorted(mounted_claims(str(tmp_path))) == ["claim-dave"]
    assert mounted_claims(str(tmp_path / "missing")) == {}


def test_select_volumes_keeps_claims_of_deleted_users():
    mounted = {"claim-alice": "/h/a", claim_name("bøb"): "/h/b", "claim-gone": "/h/g",
               "vo-shared": "/h/v"}  # fmt: skip
    volumes, missing = select_volumes(
        mounted, {"alice": "vo.a", "dave": None}, {claim_name("bøb"): "bøb"}, {"vo-shared": "vo.a"}
    )
    by_claim = {v.claim: v for v in volumes}
    assert by_claim["claim-alice"].vo == "vo.a"
    assert by_claim[claim_name("bøb")].user == "bøb"  # from the earlier runs
    assert by_claim["claim-gone"].user == "gone"  # from its as-is name
    assert "vo-shared" not in by_claim  # a VO claim, added by the app as such
    assert missing == ["dave"]


@pytest.mark.parametrize(
    "stderr, kind",
    [
        ("unable to create lock in backend: repository is already locked exclusively by PID 7",
         "locked"),
        ("Fatal: unable to open config file: Stat: stat /r/config: no such file or directory\n"
         "Is there a repository at the following location?", "unreachable"),
        ("Fatal: unable to open repository at rest:http://u:***@h/: dial tcp: connection refused",
         "unreachable"),
        ("Save(<data/1234>) returned error: write /r/data/12/1234: no space left on device",
         "full"),
        ("Fatal: all target directories/files do not exist", "source"),
        ("something else", "error"),
    ],
)  # fmt: skip
def test_error_kinds(stderr, kind):
    assert classify(stderr) == kind


def test_redaction(tmp_path, monkeypatch):
    password = tmp_path / "pw"
    password.write_text("hunter2-password\n")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-key-123")
    restic = Restic(repository="rest:https://bk:pa55word@h:8000/r/", password_file=str(password))
    text = restic.redact(
        "open rest:https://bk:pa55word@h:8000/r/ with hunter2-password and aws-secret-key-123"
    )
    assert text == "open rest:https://bk:***@h:8000/r/ with *** and ***"
    assert restic.location == "rest:https://bk:***@h:8000/r/"
    assert "RESTIC_PASSWORD" not in restic.environment()  # the file, not the value


def snap(id_: str, when: str) -> Snapshot:
    return Snapshot(id_, id_[:8], parse_time(when), "alice", "claim-alice", None, "home")


def test_choosing_a_snapshot():
    snapshots = [snap("aaaa1111", "2026-06-01T10:00:00.123456789Z"),
                 snap("aaaa2222", "2026-06-01T23:59:59Z"),
                 snap("bbbb3333", "2026-06-03T00:00:01+02:00")]  # fmt: skip
    assert snapshots[0].time == dt.datetime(2026, 6, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert choose(snapshots).id == "bbbb3333"
    assert choose(snapshots, date="2026-06-01").id == "aaaa2222"
    assert choose(snapshots, date="2026-06-02").id == "bbbb3333"  # 2026-06-02 22:00:01 UTC
    assert choose(snapshots, snapshot_id="bbbb").id == "bbbb3333"
    with pytest.raises(RestoreError, match="ambiguous"):
        choose(snapshots, snapshot_id="aaaa")
    with pytest.raises(RestoreError, match="not one of"):
        choose(snapshots, snapshot_id="cccc")
    with pytest.raises(RestoreError, match="on or before"):
        choose(snapshots, date="2026-05-31")
    with pytest.raises(RestoreError, match="YYYY-MM-DD"):
        choose(snapshots, date="yesterday")


def test_vo_shared_claims(setup):
    make_home(setup.homes / "claim-alice", "alice", large=1024)
    make_home(setup.homes / "vo-alpha-data", "vo", large=1024)
    result = setup.run(vo_claims="vo-alpha-data=vo.alpha.eu")
    assert result.returncode == 0, result.stderr
    tags = {frozenset(s["tags"]) for s in json.loads(setup.plain("snapshots", "--json"))}
    assert frozenset({"claim=vo-alpha-data", "kind=vo", "vo=vo.alpha.eu"}) in tags
    # without it, a directory that is not an EGISpawner home claim is not backed up
    assert len(tags) == 2
