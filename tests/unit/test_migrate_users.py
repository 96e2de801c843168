"""migrate-users: one user's failure does not stop the others; exit status says it."""

from __future__ import annotations

import json

import httpx
import pytest

from egi_notebooks import migrate_users
from egi_notebooks.services.hub import HubClient


def fake_hub(users: dict[str, dict], fail: set[str]) -> httpx.MockTransport:
    renamed: dict[str, str] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/hub/api")
        if path == "/users":
            items = [{"name": n} for n in users]
            return httpx.Response(200, json={"items": items, "_pagination": {}})
        if path == "/groups":
            return httpx.Response(200, json={"items": [], "_pagination": {}})
        name = path.removeprefix("/users/").replace("%40", "@")
        if name in fail:
            return httpx.Response(500, text="database is locked")
        if request.method == "GET":
            return httpx.Response(200, json=users[name])
        if request.method == "PATCH":
            renamed[name] = json.loads(request.content)["name"]
            return httpx.Response(200, json={"name": renamed[name]})
        return httpx.Response(405)

    return httpx.MockTransport(handle)


def state(voperson_id: str) -> dict:
    return {"servers": {}, "auth_state": {"oauth_user": {"voperson_id": voperson_id}}}


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
