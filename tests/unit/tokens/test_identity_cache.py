"""The tokens service identifies callers with JupyterHub's HubAuth, cached a few seconds."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from tornado import web

from egi_notebooks.services.tokens.app import TokensApp


def test_identities_are_cached_a_few_seconds_by_default():
    assert TokensApp.identity_cache_seconds.default_value <= 5
    app = TokensApp()
    app.initialize([])
    assert app.hub_auth.cache_max_age == 5


@pytest.mark.parametrize("seconds, max_age, cached", [(2.7, 2, True), (0, 1, False),
                                                      (0.5, 1, False)])  # fmt: skip
def test_the_cache_never_outlives_the_configured_time(seconds, max_age, cached, monkeypatch):
    app = TokensApp()
    app.initialize([f"--TokensApp.identity_cache_seconds={seconds}"])
    # HubAuth reads max age 0 as "forever": never passed on
    assert app.hub_auth.cache_max_age == max_age
    seen = []

    async def user_for_token(token, use_cache=True, session_id="", *, sync=True):
        seen.append(use_cache)
        return {"name": "alice"}

    monkeypatch.setattr(app.hub_auth, "user_for_token", user_for_token)
    assert asyncio.run(app.identify("t")) == {"name": "alice"}
    assert seen == [cached]


def test_the_cache_holds_no_token_values():
    app = TokensApp()
    app.initialize([])
    app.hub_auth.cache[f"token::{hashlib.sha256(b'secret-token').hexdigest()}"] = None

    async def lookup():
        return await app.identify("secret-token")

    assert asyncio.run(lookup()) is None  # from the cache: no hub at this URL
    assert "secret-token" not in repr(app.hub_auth.cache)


def test_hub_failures_reach_callers_without_the_hubs_address(monkeypatch):
    app = TokensApp()
    app.initialize(["--TokensApp.hub_api_url=http://hub.internal:8081/hub/api"])

    async def user_for_token(*args, **kwargs):
        raise web.HTTPError(500, "Failed to connect to Hub API at 'http://hub.internal:8081'")

    monkeypatch.setattr(app.hub_auth, "user_for_token", user_for_token)
    with pytest.raises(web.HTTPError) as e:
        asyncio.run(app.identify("t"))
    assert e.value.status_code == 503 and "hub.internal" not in e.value.log_message
