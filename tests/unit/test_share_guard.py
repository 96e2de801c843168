"""The share guard asks the server's spawner before JupyterHub's post makes the share."""

from __future__ import annotations

import logging
import types

import pytest
from tornado import web

from egi_notebooks.auth.share_guard import _GuardedShare


class Spawner:
    def __init__(self, refusal=None, error=None, sync=False):
        self.calls: list[str] = []
        self.refusal, self.error, self.sync = refusal, error, sync

    def before_share(self):
        self.calls.append("before")
        if self.error:
            raise self.error
        if self.sync:
            return self.refusal

        async def answer():
            return self.refusal

        return answer()

    async def after_share(self):
        self.calls.append("after")


class Handler(_GuardedShare):
    log = logging.getLogger("test")

    def __init__(self, spawner):
        self.spawner = spawner
        self.posted: list[tuple] = []

    def find_user(self, name):
        return types.SimpleNamespace(
            orm_spawners={"": object(), "big": object()},
            spawners={"": self.spawner, "big": self.spawner},
        )

    async def post(self, user_name, server_name):
        if isinstance(self.spawner, Spawner):
            self.spawner.calls.append("post")
        self.posted.append((user_name, server_name))


async def guarded(handler, server="big"):
    await handler._guarded(handler.post, "alice", server)


@pytest.mark.parametrize("sync", [False, True])
async def test_the_spawner_prepares_before_the_share_and_hears_after_it(sync):
    spawner = Spawner(sync=sync)
    handler = Handler(spawner)
    await guarded(handler)
    assert spawner.calls == ["before", "post", "after"]


async def test_a_refusal_is_403_with_the_reason_and_no_share():
    spawner = Spawner(refusal="servers of profile 'large' may not be shared")
    handler = Handler(spawner)
    with pytest.raises(web.HTTPError) as e:
        await guarded(handler)
    assert e.value.status_code == 403
    assert "servers of profile 'large' may not be shared" in e.value.log_message
    assert spawner.calls == ["before", "after"] and handler.posted == []


async def test_a_failed_preparation_is_503_and_no_share():
    spawner = Spawner(error=RuntimeError("the cluster did not answer"))
    handler = Handler(spawner)
    with pytest.raises(web.HTTPError) as e:
        await guarded(handler)
    assert e.value.status_code == 503
    assert "Nothing was shared" in e.value.log_message
    assert spawner.calls == ["before", "after"] and handler.posted == []


async def test_a_spawner_without_the_hooks_changes_nothing():
    handler = Handler(object())
    await guarded(handler)
    assert handler.posted == [("alice", "big")]


async def test_an_unknown_server_or_none_goes_to_jupyterhub_unasked():
    spawner = Spawner()
    handler = Handler(spawner)
    await guarded(handler, "nope")
    await handler._guarded(handler.post, "alice", None)
    assert handler.posted == [("alice", "nope"), ("alice", None)] and spawner.calls == [
        "post",
        "post",
    ]
