"""Which volumes: the claims of a real hub's users (REST API, paginated, with the least
scopes), their primary VO as a tag, and the claim of a user deleted from the hub still backed
up, still under that user's name."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil
from urllib.parse import quote

import pytest

from egi_notebooks.backup.volumes import claim_name
from tests.harness.hub import HubProcess

from .conftest import make_home

BACKUP_TOKEN = secrets.token_hex(16)
USERS = {"alice": "vo.alpha.eu", "bøb": "vo.beta.eu", "carol": None, "dave": "vo.alpha.eu"}


@pytest.fixture
def hub(tmp_path):
    # users are made through the admin API: no login happens, so no authenticator is needed
    config = f"""
    c.JupyterHub.authenticator_class = "null"
    c.JupyterHub.api_page_default_limit = 2   # four users: two pages at least
    c.JupyterHub.api_page_max_limit = 2
    c.JupyterHub.services.append({{"name": "backup", "api_token": "{BACKUP_TOKEN}"}})
    c.JupyterHub.load_roles.append({{
        "name": "egi-notebooks-backup", "services": ["backup"],
        "scopes": ["list:users", "read:users:name", "read:users:groups"],
    }})
    """
    with HubProcess(tmp_path / "hub", config) as hub:
        for user in USERS:
            assert hub.api("POST", f"/users/{quote(user)}").status_code == 201
        for vo in {v for v in USERS.values() if v}:
            members = [u for u, v in USERS.items() if v == vo]
            assert hub.api("POST", f"/groups/{vo}", json={"users": members}).status_code == 201
        yield hub


def test_claims_of_hub_users_and_of_a_deleted_user(setup, hub):
    for user in ("alice", "bøb", "carol"):  # dave never started a server: no claim
        make_home(setup.homes / claim_name(user), user, large=1024)
    assert claim_name("bøb") != "claim-bøb" and "---" in claim_name("bøb")
    env = {"JUPYTERHUB_API_TOKEN": BACKUP_TOKEN}
    first = setup.run(env=env, hub_api_url=hub.hub_api_url)
    assert first.returncode == 0, first.stderr
    tags = {frozenset(s["tags"]) for s in json.loads(setup.plain("snapshots", "--json"))}
    assert tags == {
        frozenset({"user=alice", "claim=claim-alice", "kind=home", "vo=vo.alpha.eu"}),
        frozenset({"user=bøb", f"claim={claim_name('bøb')}", "kind=home", "vo=vo.beta.eu"}),
        frozenset({"user=carol", "claim=claim-carol", "kind=home"}),
    }
    assert "1 hub users have no claim" in first.stderr
    assert BACKUP_TOKEN not in first.stdout + first.stderr

    # bøb is deleted from the hub; the claim stays, and so do its backups under that name
    assert hub.api("DELETE", f"/users/{quote('bøb')}").status_code == 204
    (setup.homes / claim_name("bøb") / "after-deletion.txt").write_text("still here\n")
    second = setup.run(env=env, hub_api_url=hub.hub_api_url, keep_last="5")
    assert second.returncode == 0, second.stderr
    listed = setup.run("list", "bøb", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 2
    restored = setup.run("restore", "bøb")
    assert restored.returncode == 0, restored.stderr
    target = restored.stdout.strip().splitlines()[-1]
    assert (setup.homes / claim_name("bøb") / target / "after-deletion.txt").exists()


def test_hub_unreachable_backs_up_the_mounted_claims(setup):
    make_home(setup.homes / "claim-alice", "alice", large=1024)
    result = setup.run(env={"JUPYTERHUB_API_TOKEN": BACKUP_TOKEN}, max_retries="0",
                       hub_api_url="http://127.0.0.1:9/hub/api")  # fmt: skip
    # the volume is backed up, the run still says something went wrong
    assert result.returncode == 1
    status = json.loads(setup.status_file.read_text())
    assert status["volumes"]["claim-alice"]["last_success"]
    assert any("hub" in p for p in status["last_run"]["problems"])
    assert BACKUP_TOKEN not in result.stdout + result.stderr


def test_snapshots_of_a_claim_gone_longer_than_the_retention_are_forgotten(setup, hub):
    """keep_daily keeps the latest days that have snapshots: a claim that is gone gets no new
    ones, so without ``gone_claim_retention_days`` its last snapshots stay for ever."""
    make_home(setup.homes / "claim-alice", "alice", large=1024)
    setup.plain("init")
    recent = (dt.datetime.now() - dt.timedelta(days=5)).strftime("%Y-%m-%d %H:%M:%S")
    old = "2026-05-01 12:00:00"
    # dave is still a hub user: his claim is lost, not deleted; its backups are what is left
    for claim, user, when in (("claim-gone", "gone", old), ("claim-recent", "recent", recent),
                              ("claim-dave", "dave", old)):  # fmt: skip
        setup.plain("backup", "--host", f"egi-notebooks/{claim}", "--time", when,
                    "--tag", f"claim={claim}", "--tag", "kind=home", "--tag", f"user={user}",
                    ".", cwd=setup.homes / "claim-alice")  # fmt: skip
    setup.plain("backup", "--host", "elsewhere", "--time", old, ".", cwd=setup.homes)

    def claims() -> set[str]:
        found = set()
        for s in json.loads(setup.plain("snapshots", "--json")):
            found |= {t.removeprefix("claim=") for t in s.get("tags") or [] if t[:6] == "claim="}
            found |= {"elsewhere"} if s["hostname"] == "elsewhere" else set()
        return found

    everything = {"claim-alice", "claim-gone", "claim-recent", "claim-dave", "elsewhere"}
    env = {"JUPYTERHUB_API_TOKEN": BACKUP_TOKEN}
    # the default: kept for ever, as restic does
    kept = setup.run(env=env, hub_api_url=hub.hub_api_url, keep_daily="7")
    assert kept.returncode == 0, kept.stderr
    assert claims() == everything

    # the hub cannot say who is deleted: nothing is forgotten
    unsure = setup.run(env=env, hub_api_url="http://127.0.0.1:9/hub/api", max_retries="0",
                       keep_daily="7", gone_claim_retention_days="30")  # fmt: skip
    assert unsure.returncode == 1
    assert claims() == everything
    assert "not forgetting the snapshots of gone claims" in unsure.stderr

    forgot = setup.run(env=env, hub_api_url=hub.hub_api_url, keep_daily="7",
                       gone_claim_retention_days="30")  # fmt: skip
    assert forgot.returncode == 0, forgot.stderr
    assert claims() == everything - {"claim-gone"}
    assert "forgot 1 snapshots of 1 claims gone for over 30 days: claim-gone" in forgot.stderr
    setup.plain("check")

    # a mount root that shows no home claim at all (a failed mount, say) forgets nothing
    # either, though a VO claim elsewhere was backed up
    setup.plain("backup", "--host", "egi-notebooks/claim-gone", "--time", old,
                "--tag", "claim=claim-gone", "--tag", "kind=home", ".",
                cwd=setup.homes / "claim-alice")  # fmt: skip
    shutil.move(setup.homes / "claim-alice", setup.root / "elsewhere-alice")
    make_home(setup.homes / "vo-alpha-data", "vo", large=1024)
    empty = setup.run(env=env, hub_api_url=hub.hub_api_url, keep_daily="7",
                      gone_claim_retention_days="30",
                      vo_claims="vo-alpha-data=vo.alpha.eu")  # fmt: skip
    assert empty.returncode == 0, empty.stderr
    assert {"claim-gone", "claim-dave", "claim-alice"} <= claims()
    assert "not forgetting the snapshots of gone claims: no claim under" in empty.stderr
