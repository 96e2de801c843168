"""The tokens service refuses a server's token while the server has shares or share codes,
and fails closed when the hub cannot say."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tornado import web

from egi_notebooks.services.hub import HubAPIError
from egi_notebooks.services.tokens.app import TokensApp
from egi_notebooks.services.tokens.policy import SERVER_SHARED, SERVER_TOKEN_REQUIRED


class FakeHub:
    def __init__(self, answers: dict[str, httpx.Response | Exception]) -> None:
        self.answers, self.asked = answers, []

    async def request(self, method: str, path: str, **kw) -> httpx.Response:
        self.asked.append((method, path))
        answer = self.answers.get(path, httpx.Response(200, json={"items": []}))
        if isinstance(answer, Exception):
            raise answer
        return answer


def refuse(answers: dict, servers: list[str]) -> tuple[int | None, str, list]:
    app = TokensApp()
    app.initialize([])
    app.hub = FakeHub(answers)
    try:
        asyncio.run(app.refuse_shared("alice@egi.eu", servers))
    except web.HTTPError as e:
        return e.status_code, e.log_message, app.hub.asked
    return None, "", app.hub.asked


def test_no_share_no_code_passes_after_asking_both():
    status, _, asked = refuse({}, [""])
    assert status is None
    assert asked == [("GET", "/shares/alice%40egi.eu/"), ("GET", "/share-codes/alice%40egi.eu/")]


@pytest.mark.parametrize("kind", ["shares", "share-codes"])
def test_a_share_or_a_code_refuses(kind):
    answers = {f"/{kind}/alice%40egi.eu/lab": httpx.Response(200, json={"items": [{"x": 1}]})}
    assert refuse(answers, ["lab"])[:2] == (403, SERVER_SHARED)
    # every server the token names is checked
    assert refuse(answers, ["", "lab"])[:2] == (403, SERVER_SHARED)


def test_unknown_server_and_hub_trouble_fail_closed():
    missing = {"/shares/alice%40egi.eu/x": httpx.Response(404, json={})}
    assert refuse(missing, ["x"])[:2] == (403, SERVER_TOKEN_REQUIRED)
    no_role = {"/shares/alice%40egi.eu/": httpx.Response(403, json={})}
    assert refuse(no_role, [""])[0] == 503
    down = {"/shares/alice%40egi.eu/": HubAPIError("GET", "/shares", 0, "down")}
    assert refuse(down, [""])[0] == 503
