"""Probe phases against a hub API modelled in memory (httpx.MockTransport), and the token
check cells run as a kernel runs them."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from egi_notebooks.services.hub import HubClient
from egi_notebooks.services.status import PROBE_GROUP
from egi_notebooks.services.status.probe import (
    TOKEN_FILE_CODE,
    TOKEN_SERVICE_CODE,
    Probe,
    ProbeConfig,
)
from tests.harness.hub import free_port

GROUP_PATH = f"/hub/api/groups/{PROBE_GROUP}"


class GroupHub:
    """Users and groups as the hub keeps them; ``before_create`` runs just before a group
    creation is answered (another status service creating the same group meanwhile)."""

    def __init__(self) -> None:
        self.users: dict[str, dict] = {}
        self.groups: dict[str, list[str]] = {}
        self.before_create = lambda: None
        self.calls: list[tuple[str, str]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.calls.append((method, path))
        body = json.loads(request.content) if request.content else {}
        if path.startswith("/hub/api/users/"):
            name = path.rsplit("/", 1)[1]
            if method == "POST":
                if name in self.users:
                    return httpx.Response(409, json={"message": "exists"})
                self.users[name] = {"name": name, "groups": [], "servers": {}}
                return httpx.Response(201, json=self.users[name])
            if name not in self.users:
                return httpx.Response(404, json={"message": "no such user"})
            groups = [g for g, members in self.groups.items() if name in members]
            return httpx.Response(200, json={**self.users[name], "groups": groups})
        group = path.removeprefix("/hub/api/groups/").removesuffix("/users")
        if method == "POST" and path.endswith("/users"):
            if group not in self.groups:
                return httpx.Response(404, json={"message": "no such group"})
            self.groups[group] += [u for u in body["users"] if u not in self.groups[group]]
            return httpx.Response(200, json={"name": group, "users": self.groups[group]})
        if method == "POST":
            self.before_create()
            if group in self.groups:
                return httpx.Response(409, json={"message": f"Group {group} already exists"})
            self.groups[group] = list(body.get("users", []))
            return httpx.Response(201, json={"name": group, "users": self.groups[group]})
        return httpx.Response(405)


def probe_for(hub: GroupHub, user: str) -> Probe:
    client = HubClient(
        "http://hub.test/hub/api", "service-token", transport=httpx.MockTransport(hub.handle)
    )
    config = ProbeConfig(user=user, proxy_url="http://proxy.test", token="t", timeouts={})
    return Probe(client, config, logging.getLogger("test"))


async def test_probe_user_is_created_and_marked():
    hub = GroupHub()
    probe = probe_for(hub, "egi-notebooks-probe")
    await probe.phase("user", probe.ensure_user)
    assert hub.groups == {PROBE_GROUP: ["egi-notebooks-probe"]}
    await probe.hub.aclose()


async def test_marker_group_created_meanwhile_by_another_probe():
    # two status services (two probe users) start with no marker group: the other one
    # creates it between this probe's "no such group" and its own creation
    hub = GroupHub()
    hub.groups = {}
    hub.users["probe-b"] = {"name": "probe-b", "groups": [], "servers": {}}

    def other_service_creates_group() -> None:
        hub.groups.setdefault(PROBE_GROUP, ["probe-b"])

    hub.before_create = other_service_creates_group
    probe = probe_for(hub, "probe-a")
    await probe.phase("user", probe.ensure_user)
    assert sorted(hub.groups[PROBE_GROUP]) == ["probe-a", "probe-b"]
    await probe.hub.aclose()


async def test_member_of_the_group_already_costs_no_group_call():
    hub = GroupHub()
    hub.users["p"] = {"name": "p", "groups": [], "servers": {}}
    hub.groups = {PROBE_GROUP: ["p"]}
    probe = probe_for(hub, "p")
    await probe.phase("user", probe.ensure_user)
    assert all("/groups/" not in path for _, path in hub.calls)
    await probe.hub.aclose()


# -- the token check cells, run as the kernel runs them (real Python, real HTTP) ------------


class FakeTokensService:
    """Answers GET with the status and JSON body the test sets; records the Authorization."""

    def __init__(self) -> None:
        self.status = 200
        self.body: object = {}
        self.authorization: list[str | None] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.authorization.append(self.headers.get("Authorization"))
                data = (
                    service.body
                    if isinstance(service.body, bytes)
                    else json.dumps(service.body).encode()
                )
                self.send_response(service.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/tokens/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tokens_service():
    service = FakeTokensService()
    yield service
    service.close()


def run_cell(code: str) -> str:
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": "server-api-token"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def service_cell(url: str) -> str:
    return run_cell(TOKEN_SERVICE_CODE.format(url=url, timeout=10))


def test_service_check_a_token_is_ok_and_never_printed(tokens_service):
    tokens_service.body = {"access_token": "eyJ-secret", "expires_at": 1}
    assert service_cell(tokens_service.url) == "token-ok"
    assert tokens_service.authorization == ["token server-api-token"]


def test_service_check_no_token_for_the_probe_user_is_ok(tokens_service):
    # what the tokens service answers a user who never signed in, after checking the
    # caller's token with the hub and asking the hub for the user's token
    tokens_service.status = 404
    tokens_service.body = {"status": 404, "message": "no valid access token: log in again"}
    assert service_cell(tokens_service.url) == "token-ok"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, {"message": "Authorization: token required"}, "tokens service: HTTP 401"),
        (403, {"message": "invalid or expired token"}, "tokens service: HTTP 403"),
        (503, {"message": "the hub could not give a token"}, "tokens service: HTTP 503"),
        (404, {"message": "Not Found"}, "tokens service: HTTP 404"),  # wrong URL
        (200, {"message": "something else"}, "answered 200 without a token"),
        (200, b"<html>a login page</html>", "answered 200 with no JSON"),
    ],
)
def test_service_check_failures_name_the_answer(tokens_service, status, body, reason):
    tokens_service.status = status
    tokens_service.body = body
    assert reason in service_cell(tokens_service.url)


def test_service_check_unreachable():
    url = f"http://127.0.0.1:{free_port()}/services/tokens/token"
    output = service_cell(url)
    assert output == f"tokens service {url} unreachable: [Errno 111] Connection refused"


def test_file_check(tmp_path):
    mount = tmp_path / "egi.eu"
    token = mount / "access_token"

    def cell() -> str:
        return run_cell(TOKEN_FILE_CODE.format(path=str(token)))

    assert cell() == f"token directory {mount} is not mounted"
    mount.mkdir()
    assert cell() == "token-ok"  # the probe user's Secret: mounted, no keys
    token.write_text("")
    assert cell() == f"token file {token} is empty"
    token.write_text("eyJ-secret")
    assert cell() == "token-ok"
