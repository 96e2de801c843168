"""migrate-users: one user's failure does not stop the others; exit status says it."""

from __future__ import annotations

import json
from urllib.parse import unquote

import httpx
import pytest

from egi_notebooks import migrate_users
from egi_notebooks.services.hub import HubClient


def fake_hub(
    users: dict[str, dict],
    fail: set[str] = frozenset(),
    groups: dict[str, list[str]] | None = None,
    changes: list | None = None,
) -> httpx.MockTransport:
    """The hub API for ``users`` (name -> model) and ``groups`` (name -> members); every
    change the command asks for is appended to ``changes``."""
    changes = [] if changes is None else changes
    groups = {} if groups is None else groups

    def handle(request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path.removeprefix("/hub/api"))
        if path == "/users":
            items = [{"name": n} for n in users]
            return httpx.Response(200, json={"items": items, "_pagination": {}})
        if path == "/groups":
            items = [{"name": g, "users": m, "roles": []} for g, m in groups.items()]
            return httpx.Response(200, json={"items": items, "_pagination": {}})
        if request.method != "GET":
            changes.append((request.method, path, json.loads(request.content or b"null")))
        if path.startswith("/groups/"):
            return httpx.Response(201 if request.method == "POST" else 204)
        name = path.removeprefix("/users/")
        if name in fail:
            return httpx.Response(500, text="database is locked")
        if request.method == "GET":
            return httpx.Response(200, json=users[name])
        if request.method == "PATCH":
            return httpx.Response(200, json={"name": json.loads(request.content).get("name")})
        return httpx.Response(405)

    return httpx.MockTransport(handle)


def state(voperson_id: str, sub: str | None = None) -> dict:
    claims = {"voperson_id": voperson_id, "sub": sub or f"sub-of-{voperson_id}"}
    return {"servers": {}, "auth_state": {"oauth_user": claims, "access_token": "AT-SECRET"}}


async def migrate(users, args=(), settings=None, **hub) -> tuple[migrate_users.Report, list]:
    changes: list = []
    transport = fake_hub(users, changes=changes, **hub)
    parsed = migrate_users.parse_args(list(args))
    async with HubClient("http://hub/hub/api", "t", transport=transport, backoff=0) as client:
        report = await migrate_users.Migration(client, parsed, settings).run()
    return report, changes


async def test_one_failing_user_does_not_stop_the_others(capsys):
    users = {"a": state("a@egi.eu"), "b": state("b@egi.eu"), "c": state("c@egi.eu")}
    transport = fake_hub(users, fail={"b"})
    args = migrate_users.parse_args(["--apply"])
    async with HubClient("http://hub/hub/api", "t", transport=transport, backoff=0) as hub:
        report = await migrate_users.Migration(hub, args).run()
    assert sorted(report.renamed) == [("a", "a@egi.eu"), ("c", "c@egi.eu")]
    assert [what for what, _ in report.failed] == ["user 'b'"]
    assert "database is locked" in report.failed[0][1]
    report.print()
    out = capsys.readouterr()
    assert "FAILED user 'b'" in out.err
    assert "users: 2 renamed" in out.out and "1 failed" in out.out


def test_target_name_is_what_the_authenticator_would_name_the_user():
    def target(value):
        return migrate_users.target_name(state(value)["auth_state"], "voperson_id", "oauth_user")

    assert target("ab12@egi.eu") == "ab12@egi.eu"
    assert migrate_users.target_name({"oauth_user": {}}, "voperson_id", "oauth_user") is None
    assert migrate_users.target_name({"oauth_user": "x"}, "voperson_id", "oauth_user") is None
    # values the authenticator refuses at login: renaming a user to them would lock them out
    for refused in (" ab@egi.eu ", "AB@EGI.eu", "\u212aelvin@egi.eu", "no-at-sign"):
        with pytest.raises(migrate_users.UnusableClaim):
            target(refused)


def test_no_token_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    assert migrate_users.main([]) == 2
    assert "JUPYTERHUB_API_TOKEN" in capsys.readouterr().err


async def test_a_squatted_name_is_reported_and_left_alone(capsys):
    # mallory's 1.0 name (her changeable preferred_username) is bob's voperson_id
    users = {"bob@egi.eu": state("mallory@egi.eu"), "alice": state("alice@egi.eu")}
    report, changes = await migrate(users, ["--apply"])
    assert report.squatted == [("bob@egi.eu", "mallory@egi.eu")]
    # alice's binding, then her rename; nothing for mallory's
    assert [path for _, path, _ in changes] == ["/users/alice", "/users/alice"]
    assert report.exit_status == 1
    report.print()
    out = capsys.readouterr()
    assert "COLLISION 'bob@egi.eu'" in out.err and "'mallory@egi.eu'" in out.err
    assert "1 collision(s)" in out.out and "AT-SECRET" not in out.out + out.err


async def test_a_new_name_held_by_another_identity_is_a_collision():
    # bob's 1.0 account 'bobby' would become 'bob@egi.eu', held by an account of another sub
    users = {
        "bobby": state("bob@egi.eu", sub="bob-sub"),
        "bob@egi.eu": state("bob@egi.eu", sub="someone-else"),
    }
    report, changes = await migrate(users, ["--apply"])
    assert report.contested == [("bobby", "bob@egi.eu")]
    assert not report.renamed and not [c for c in changes if c[1] == "/users/bobby"]
    assert report.exit_status == 1


async def test_renamed_and_already_named_users_are_bound_to_their_identity():
    users = {"alice": state("alice@egi.eu", sub="a1"), "bob@egi.eu": state("bob@egi.eu", "b2")}
    report, changes = await migrate(users, ["--apply", "--no-groups"])
    assert report.exit_status == 0
    patches = [(path, body) for method, path, body in changes if method == "PATCH"]
    # alice: the binding, then a rename alone (JupyterHub can lose a rename sent with an
    # auth_state: another request's end rolls back the session while it encrypts)
    assert [p for p, _ in patches if p == "/users/alice"] == ["/users/alice"] * 2
    alice, renamed = (body for p, body in patches if p == "/users/alice")
    assert renamed == {"name": "alice@egi.eu"}
    assert "name" not in alice
    assert alice["auth_state"]["identity"] == "sub:a1"
    assert alice["auth_state"]["legacy_names"] == {"identity": "sub:a1", "names": ["alice"]}
    assert alice["auth_state"]["access_token"] == "AT-SECRET"  # the rest is kept
    (bob,) = (body for p, body in patches if p == "/users/bob@egi.eu")
    assert "name" not in bob
    assert bob["auth_state"]["legacy_names"] == {"identity": "sub:b2", "names": ["bob@egi.eu"]}
    # a second run finds them bound: nothing to write
    users["bob@egi.eu"]["auth_state"] = bob["auth_state"]
    report, changes = await migrate({"bob@egi.eu": users["bob@egi.eu"]}, ["--apply"])
    assert changes == [] and report.already == ["bob@egi.eu"] and report.bound == []


EVIL = "urn:mace:evil.org:group:vo.notebooks.egi.eu:role=member#evil.org"
EVIL_AUTHORITY = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#evil.org"
GOOD = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"


async def test_groups_of_untrusted_namespaces_or_authorities_are_not_merged(capsys):
    groups = {EVIL: ["mallory"], EVIL_AUTHORITY: ["eve"], GOOD: ["alice"]}
    report, changes = await migrate({}, ["--apply"], groups=groups)
    group_changes = [(m, p) for m, p, _ in changes]
    assert ("POST", "/groups/vo.notebooks.egi.eu") in group_changes
    assert [body for m, p, body in changes if m == "POST"] == [{"users": ["alice"]}]
    assert ("DELETE", f"/groups/{GOOD}") in group_changes
    assert not [
        p for _, p in group_changes if p in (f"/groups/{EVIL}", f"/groups/{EVIL_AUTHORITY}")
    ]
    assert sorted(report.groups_untrusted) == [(EVIL_AUTHORITY, ["eve"]), (EVIL, ["mallory"])]
    report.print()
    assert (
        f"skip group {EVIL!r}: its namespace or authority is not trusted" in capsys.readouterr().out
    )


async def test_the_trust_and_identity_claim_come_from_the_hub_configuration(tmp_path):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(
        "c.EGICheckinAuthenticator.trusted_entitlement_namespaces = {'urn:mace:evil.org'}\n"
        "c.EGICheckinAuthenticator.trusted_entitlement_authorities = {'evil.org'}\n"
        "c.EGICheckinAuthenticator.identity_claim = 'voperson_id'\n"
    )
    settings = migrate_users.load_settings(str(config))
    assert settings.identity_claim == "voperson_id"
    report, _ = await migrate({}, ["--apply"], settings, groups={EVIL: ["m"], GOOD: ["a"]})
    assert [urn for urn, _ in report.groups_untrusted] == [GOOD]
    assert migrate_users.load_settings(None).trust == migrate_users.Settings().trust
    with pytest.raises(ValueError, match="no such configuration file"):
        migrate_users.load_settings(str(tmp_path / "missing.py"))
