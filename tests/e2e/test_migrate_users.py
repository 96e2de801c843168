"""``egi-notebooks migrate-users`` against a real hub whose users logged in the 1.0 way.

The hub runs EGICheckinAuthenticator with the documented 1.0-compatible setting
``username_claim = "preferred_username"``; users log in through the real local provider, so
their auth_state is what a real login stores (claims under ``oauth_user``, as 1.0 kept them).
The command then renames them to their ``voperson_id``, and after the switch to the default
``username_claim`` they log in as the same hub user.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from egi_notebooks.demo.accounts import demo_user, demo_users, entitlement
from egi_notebooks.migrate_users import SCOPES
from egi_notebooks.spawner.names import user_slug
from tests.harness.egi_hub import EGIHub, kube_spawner_config, on_cluster
from tests.harness.hub import LOCAL_SPAWNER_CONFIG
from tests.harness.login import login
from tests.harness.provider import CERTIFIED

# the certified provider, as EGI Check-in
pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

NOTEBOOKS_URN = entitlement("vo.notebooks.egi.eu")
EMPTY_URN = entitlement("vo.gone.eu")
# a namespace and authority the authenticator does not trust, with an allowed VO's name
UNTRUSTED_URN = "urn:mace:evil.org:group:vo.notebooks.egi.eu:role=member#evil.org"
COMPAT = """
c.EGICheckinAuthenticator.username_claim = "preferred_username"
"""
COMMON = (
    LOCAL_SPAWNER_CONFIG
    + """
c.JupyterHub.allow_named_servers = True
c.Authenticator.admin_users = {"hubadmin"}
"""
)


def users_1_0():
    users = demo_users()
    users["carol"] = demo_user("carol", [entitlement("vo.access.egi.eu")])
    del users["carol"]["claims"]["voperson_id"]  # 1.0 did not request the voperson_id scope
    users["erin"] = demo_user("erin", [entitlement("vo.access.egi.eu")])
    return users


def migrate(egi, token: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JUPYTERHUB_API_URL=egi.hub.hub_api_url, JUPYTERHUB_API_TOKEN=token)
    return subprocess.run(
        [sys.executable, "-m", "egi_notebooks.cli", "migrate-users", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def names(egi) -> set[str]:
    r = egi.hub.api("GET", "/users", params={"limit": 200})
    r.raise_for_status()
    return {u["name"] for u in r.json()}


def groups(egi) -> dict[str, list[str]]:
    r = egi.hub.api("GET", "/groups")
    r.raise_for_status()
    return {g["name"]: sorted(g["users"]) for g in r.json()}


def ok(response):
    assert response.status_code < 300, response.text
    return response


def wait_gone(egi, user: str, server: str = "") -> None:
    egi.hub.wait_for_server(user, server, ready=False, timeout=120)


def test_users_renamed_to_voperson_id_and_log_in_as_the_same_user(egi_hub_factory):
    egi = egi_hub_factory(COMPAT + COMMON, users=users_1_0())
    for login_name in ("alice", "bob", "carol", "erin", "admin"):
        result = login(egi.hub.url, login_name)
        assert result.ok, (login_name, result.response.text[:300])
    assert {"alice", "bob", "carol", "erin", "admin"} <= names(egi)
    # Somebody already holds erin's new name (e.g. a test login with the new settings).
    ok(egi.hub.api("POST", f"/users/{quote('erin@egi.eu')}"))
    # 1.0's groups: named by the raw entitlement URNs; one has nobody left.
    ok(egi.hub.api("POST", f"/groups/{quote(NOTEBOOKS_URN, safe='')}", json={"users": ["alice"]}))
    ok(egi.hub.api("POST", f"/groups/{quote(EMPTY_URN, safe='')}"))
    ok(egi.hub.api("POST", f"/groups/{quote(UNTRUSTED_URN, safe='')}", json={"users": ["erin"]}))
    ok(egi.hub.api("POST", "/groups/teachers", json={"users": ["alice"]}))
    # alice has a stopped named server; bob's server runs.
    ok(egi.hub.api("POST", "/users/alice/servers/lab"))
    egi.hub.wait_for_server("alice", "lab", timeout=120)
    ok(egi.hub.api("DELETE", "/users/alice/servers/lab"))
    wait_gone(egi, "alice", "lab")
    ok(egi.hub.api("POST", "/users/bob/server"))
    egi.hub.wait_for_server("bob", timeout=120)
    alice_before = egi.user_model("alice")
    token = ok(
        egi.hub.api("POST", "/users/hubadmin/tokens", json={"scopes": SCOPES, "note": "migrate"})
    ).json()["token"]

    # Dry run (the default): says everything, changes nothing.
    before = (names(egi), groups(egi))
    dry = migrate(egi, token)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    out = dry.stdout
    assert "would rename 'alice' -> 'alice@egi.eu'" in out
    assert "would rename 'admin' -> 'admin@egi.eu'" in out
    assert "skip 'bob': server(s) running or starting (default)" in out
    assert "skip 'carol': no voperson_id in auth_state" in out
    assert "skip 'hubadmin': no auth_state" in out
    assert "skip 'erin': a user named 'erin@egi.eu' already exists" in out
    assert f"would move 1 member(s) of group {NOTEBOOKS_URN!r} to 'vo.notebooks.egi.eu'" in out
    assert f"would delete group {EMPTY_URN!r}" in out
    assert f"skip group {UNTRUSTED_URN!r}: its namespace or authority is not trusted" in out
    assert "(dry run: nothing changed)" in out
    secrets = [token, alice_before["auth_state"]["access_token"]]
    assert not [s for s in secrets if s in out or s in dry.stderr]  # nothing secret printed
    assert (names(egi), groups(egi)) == before

    applied = migrate(egi, token, "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "rename 'alice' -> 'alice@egi.eu'" in applied.stdout
    current = names(egi)
    assert "admin@egi.eu" in current, applied.stdout + applied.stderr
    assert {"alice@egi.eu", "admin@egi.eu", "bob", "carol", "erin", "erin@egi.eu"} <= current
    assert "alice" not in current and "admin" not in current
    after = groups(egi)
    assert NOTEBOOKS_URN not in after and EMPTY_URN not in after
    assert "alice@egi.eu" in after["vo.notebooks.egi.eu"]
    # the untrusted group's member is no VO member, and the group is left for the operator
    assert "erin" not in after["vo.notebooks.egi.eu"] and after[UNTRUSTED_URN] == ["erin"]
    assert after["teachers"] == ["alice@egi.eu"]  # other groups are left alone
    assert egi.hub.wait_for_server("bob")  # still running, untouched
    assert egi.user_model("admin@egi.eu")["admin"] is True

    # Once bob's server has stopped, running the command again renames him too.
    ok(egi.hub.api("DELETE", "/users/bob/server"))
    wait_gone(egi, "bob")
    again = migrate(egi, token, "--apply")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "rename 'bob' -> 'bob@egi.eu'" in again.stdout
    assert "users: 1 renamed, 2 already named by voperson_id" in again.stdout

    # The switch: the default username_claim (voperson_id). alice is the same hub user.
    egi.hub.config = egi.authenticator_config() + COMMON
    egi.hub.restart()
    result = login(egi.hub.url, "alice")
    assert result.ok, result.response.text[:300]
    assert "alice" not in names(egi)
    model = ok(
        egi.hub.api("GET", f"/users/{quote('alice@egi.eu')}?include_stopped_servers=1")
    ).json()
    assert model["created"] == alice_before["created"]
    assert "lab" in model["servers"]
    # the login synced the groups to her VOs, as at every login (manage_groups)
    assert sorted(model["groups"]) == ["vo.access.egi.eu", "vo.notebooks.egi.eu"]
    assert model["auth_state"]["oauth_user"]["voperson_id"] == "alice@egi.eu"


def test_missing_token_scope_is_one_clear_error(egi_hub_factory):
    egi = egi_hub_factory(COMPAT + COMMON)
    assert login(egi.hub.url, "alice").ok
    weak = ok(
        egi.hub.api("POST", "/users/hubadmin/tokens", json={"scopes": ["read:users"]})
    ).json()["token"]
    result = migrate(egi, weak, "--apply")
    assert result.returncode == 1
    assert "HTTP 403" in result.stderr and "admin:users" in result.stderr
    assert "alice" in names(egi)


# ----- a squatter: mallory's 1.0 name is bob's voperson_id ------------------------------

SQUAT_NS = "egi"
SQUAT_CLAIM = "3f9c2a7d5b8e4f60a1c2d3e4f5a6b7c8"  # 1.0 named home claims uuid4().hex
ALICE_CLAIM = "0a1b2c3d4e5f40718293a4b5c6d7e8f9"
EVIL_STARTUP = "print('mallory was here')\n"


def squatter_users() -> dict:
    users = demo_users()
    # mallory is a member, and chose bob's voperson_id as her (changeable) preferred_username
    users["mallory"] = demo_user("mallory", [entitlement("vo.access.egi.eu")])
    users["mallory"]["claims"]["preferred_username"] = "bob@egi.eu"
    return users


def claim_1_0(egi, name: str, username: str) -> Path:
    """A home claim as egi-notebooks-hub 1.0 made it (random name, username annotation),
    labelled as `egi-notebooks migrate-claims` labels it; its directory on the 'node'."""
    egi.k8s.post(
        "persistentvolumeclaims",
        SQUAT_NS,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": name,
                "labels": {"component": "singleuser-storage", "egi.eu/user": user_slug(username)},
                "annotations": {"hub.jupyter.org/username": username},
            },
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    home = egi.k8s.root / "claims" / name
    (home / ".ipython/profile_default/startup").mkdir(parents=True)
    return home


def mounted_claims(egi, user: str) -> set[str]:
    for pod in egi.k8s.list("pods", SQUAT_NS):
        if (pod["metadata"].get("annotations") or {}).get("hub.jupyter.org/username") == user:
            return {
                v["persistentVolumeClaim"]["claimName"]
                for v in pod["spec"]["volumes"]
                if "persistentVolumeClaim" in v
            }
    raise AssertionError(f"no pod for {user}")


def test_a_squatters_account_and_claim_never_reach_the_user_whose_name_she_took(tmp_path):
    config = (
        kube_spawner_config(SQUAT_NS, timeout=90) + 'c.Authenticator.admin_users = {"hubadmin"}\n'
    )
    egi = EGIHub(tmp_path / "hub", COMPAT + config, provider_implementation=CERTIFIED,
                 users=squatter_users())  # fmt: skip
    with on_cluster(egi, tmp_path / "k8s"):
        for who in ("mallory", "alice"):
            assert login(egi.hub.url, who).ok
        assert {"bob@egi.eu", "alice"} <= names(egi)  # mallory's 1.0 account is 'bob@egi.eu'
        mallory_sub = egi.auth_state("bob@egi.eu")["oauth_user"]["sub"]
        evil = claim_1_0(egi, SQUAT_CLAIM, "bob@egi.eu")
        (evil / ".ipython/profile_default/startup/00-x.py").write_text(EVIL_STARTUP)
        claim_1_0(egi, ALICE_CLAIM, "alice")
        token = ok(egi.hub.api("POST", "/users/hubadmin/tokens", json={"scopes": SCOPES})).json()[
            "token"
        ]

        # migrate-users reports the squatted name, changes nothing for it, exits non-zero
        for args in ((), ("--apply",)):
            result = migrate(egi, token, *args)
            assert result.returncode == 1, result.stdout + result.stderr
            assert "'bob@egi.eu'" in result.stderr and "mallory@egi.eu" in result.stderr
        assert "bob@egi.eu" in names(egi) and "mallory@egi.eu" not in names(egi)
        assert "alice@egi.eu" in names(egi)  # the others were migrated

        # the switch to voperson_id names: bob's login does not get mallory's account
        egi.hub.config = egi.authenticator_config() + config
        egi.hub.restart()
        bob = login(egi.hub.url, "bob")
        assert bob.response.status_code == 403, bob.response.text[:300]
        assert "belongs to another" in bob.response.text
        assert egi.auth_state("bob@egi.eu")["oauth_user"]["sub"] == mallory_sub
        assert "Login of 'bob@egi.eu' refused" in egi.hub.log()

        # the operator renames her account by hand: bob gets a new one, never her claim
        ok(egi.hub.api("PATCH", f"/users/{quote('bob@egi.eu')}", json={"name": "mallory@egi.eu"}))
        assert login(egi.hub.url, "bob").ok
        ok(egi.hub.api("POST", f"/users/{quote('bob@egi.eu')}/server"))
        egi.hub.wait_for_server("bob@egi.eu", timeout=120)
        claims = mounted_claims(egi, "bob@egi.eu")
        assert SQUAT_CLAIM not in claims and claims, claims
        for claim in claims:  # no startup file of mallory's where bob's kernels start
            assert not list((egi.k8s.root / "claims" / claim).rglob("00-x.py"))
        assert "Not adopting claim" in egi.hub.log()

        # alice, migrated: her 1.0 claim (recorded by migrate-users for her identity) is hers
        assert login(egi.hub.url, "alice").ok
        ok(egi.hub.api("POST", f"/users/{quote('alice@egi.eu')}/server"))
        egi.hub.wait_for_server("alice@egi.eu", timeout=120)
        assert ALICE_CLAIM in mounted_claims(egi, "alice@egi.eu")
