"""The token-Secret write runs as a task beside the claim step; whatever ends the spawn, the
task is awaited or cancelled: a failing write gives a clear spawn error, and asyncio never
reports "Task exception was never retrieved" (checked with the loop's exception handler after
the spawner and its tasks are garbage-collected)."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from .conftest import spawn

SECRET_ERROR = (
    "Could not store your access token (Secret egi-token-alice): "
    "the Kubernetes API answered 500 Internal Server Error after 2 attempts."
)


@pytest.fixture
async def unretrieved(caplog):
    """Messages asyncio emits for task exceptions nobody retrieved; collected after GC."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        seen.append(f"{context.get('message')}: {context.get('exception')!r}")

    loop.set_exception_handler(handler)
    caplog.set_level(logging.ERROR, logger="asyncio")

    async def collect() -> list[str]:
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0)
        return seen + [r.getMessage() for r in caplog.records if r.name == "asyncio"]

    yield collect
    loop.set_exception_handler(previous)


def forget(spawner) -> None:
    """Drop every reference the test fixtures keep, so the spawner and its tasks can go."""
    spawner.user.spawners.clear()


async def failed_spawn(spawner) -> str:
    """Spawn, expecting failure; the message only (an exception keeps its frames alive)."""
    try:
        await spawn(spawner)
    except BaseException as e:  # noqa: BLE001 (cancellation is one of the outcomes)
        return f"{type(e).__name__}: {e}"
    raise AssertionError("the spawn succeeded")


def pending_secret_tasks() -> list[asyncio.Task]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and "_settle_token_secrets" in repr(t.get_coro())
    ]


async def outliving_writes() -> int:
    """How many Secret writes outlived the spawn; each is let finish (the emulator fails it)
    and then dropped, so that an unretrieved failure is reported when it is collected."""
    left = pending_secret_tasks()
    if left:
        await asyncio.wait(left, timeout=60)
    count = len(left)
    del left
    return count


async def test_failing_write_fails_the_spawn_clearly(cluster, make_spawner, unretrieved):
    cluster.k8s.inject_fault(plural="secrets", status=500, times=None)
    spawner = make_spawner(k8s_api_attempts=2)
    message = await failed_spawn(spawner)
    assert message == f"KubernetesTrouble: {SECRET_ERROR}"
    assert await outliving_writes() == 0
    forget(spawner)
    del spawner
    assert await unretrieved() == []
    assert not cluster.k8s.objects("pods")


async def test_claim_failure_during_a_failing_write(cluster, make_spawner, unretrieved):
    # the spawn fails before the manifest (the claim step), while the write fails too
    cluster.k8s.inject_fault(plural="secrets", status=500, times=None, delay=0.2)
    cluster.k8s.inject_fault(
        verb="create", plural="persistentvolumeclaims", status=403, times=None,
        message='persistentvolumeclaims "claim-alice" is forbidden: exceeded quota: storage',
    )  # fmt: skip
    spawner = make_spawner(k8s_api_attempts=2)
    message = await failed_spawn(spawner)
    assert "resource quota is exhausted" in message, message
    outlived = await outliving_writes()
    forget(spawner)
    del spawner
    assert await unretrieved() == []
    assert outlived == 0


async def test_cancelled_spawn_leaves_no_write_behind(cluster, make_spawner, unretrieved):
    # JupyterHub cancels a pending spawn (start_timeout, or the user stops it) while the
    # write is still under way; the write then fails
    cluster.k8s.inject_fault(plural="secrets", status=500, times=None, delay=0.5)
    cluster.k8s.inject_fault(verb="get", plural="persistentvolumeclaims", delay=2, times=None,
                             status=None)  # fmt: skip
    spawner = make_spawner(k8s_api_attempts=2)
    start = asyncio.ensure_future(spawn(spawner))
    deadline = asyncio.get_running_loop().time() + 60
    while not pending_secret_tasks():
        assert asyncio.get_running_loop().time() < deadline, "the write never started"
        await asyncio.sleep(0.01)
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    del start
    outlived = await outliving_writes()
    await spawner.stop()
    forget(spawner)
    del spawner
    assert await unretrieved() == []
    assert outlived == 0
