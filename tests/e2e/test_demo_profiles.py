"""The demo's spawn form offers profiles by VO, as notebooks.egi.eu does: alice (a member of
vo.notebooks.egi.eu) may choose Large, bob (vo.access.egi.eu only) is offered Small alone and
refused Large when he asks for it all the same."""

from __future__ import annotations

import html
import re
import time
from urllib.parse import quote

import httpx
import pytest

from tests.harness.browser import DemoProcess, stop_and_check
from tests.harness.login import form_fields, login
from tests.harness.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]

SMALL, LARGE = "Small (1 CPU, 2 GB)", "Large (4 CPU, 8 GB)"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    demo = DemoProcess(free_port(), tmp_path_factory.mktemp("demo") / "state").start()
    yield demo
    problems = stop_and_check(demo)
    assert not problems, "\n".join(problems)


def offered(page: httpx.Response) -> list[str]:
    return re.findall(r'name="profile" id="profile-[^"]*" value="([^"]*)"', page.text)


def spawn_page(demo: DemoProcess, client: httpx.Client, user: str) -> httpx.Response:
    page = client.get(f"{demo.url}/hub/spawn/{quote(user, safe='')}")
    assert page.status_code == 200, page.text[:300]
    return page


def server_model(demo: DemoProcess, client: httpx.Client, user: str) -> dict:
    r = client.get(f"{demo.url}/hub/api/users/{quote(user, safe='')}")
    assert r.status_code == 200, r.text[:300]
    return r.json()


def wait_for_ready(demo: DemoProcess, client: httpx.Client, user: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while True:
        server = server_model(demo, client, user)["servers"].get("") or {}
        if server.get("ready"):
            return server
        assert time.monotonic() < deadline, server
        time.sleep(0.5)


def test_profiles_offered_by_vo_and_the_choice_recorded(demo):
    alice = login(demo.url, "alice")
    assert alice.ok
    page = spawn_page(demo, alice.client, "alice@egi.eu")
    assert SMALL in page.text and LARGE in page.text
    assert offered(page) == ["small", "large"]
    action, fields = form_fields(page)
    started = alice.client.post(action, data={**fields, "profile": "large"})
    assert started.status_code in (200, 302), started.text[:300]
    server = wait_for_ready(demo, alice.client, "alice@egi.eu")
    assert server["user_options"] == {"profile": "large"}


def test_a_profile_not_offered_is_refused(demo):
    bob = login(demo.url, "bob")
    assert bob.ok
    page = spawn_page(demo, bob.client, "bob@egi.eu")
    assert SMALL in page.text and LARGE not in page.text
    assert offered(page) == ["small"]
    action, fields = form_fields(page)
    refused = bob.client.post(action, data={**fields, "profile": "large"})
    # the form again, with the reason
    assert refused.status_code == 403 and offered(refused) == ["small"]
    assert "Profile 'large' is not available to you." in html.unescape(refused.text)
    assert not server_model(demo, bob.client, "bob@egi.eu")["servers"]
