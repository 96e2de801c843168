"""Probe phases against a hub API modelled in memory (httpx.MockTransport)."""

from __future__ import annotations

import json
import logging

import httpx

from egi_notebooks.services.hub import HubClient
from egi_notebooks.services.status import PROBE_GROUP
from egi_notebooks.services.status.probe import Probe, ProbeConfig

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
