"""The one retry loop (egi_notebooks.retry) and the hub client built on it."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import httpx
import pytest

from egi_notebooks import retry as retry_module
from egi_notebooks.retry import pauses, retry
from egi_notebooks.services.hub import HubAPIError, HubClient


class Flaky(Exception):
    pass


class Broken(Exception):
    pass


@pytest.fixture
def slept(monkeypatch):
    """The pauses the retry loop asks for; no real waiting."""
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)
        await real_sleep(0)

    # only the retry module's view of asyncio: the event loop keeps the real one
    monkeypatch.setattr(retry_module, "asyncio", SimpleNamespace(sleep=fake_sleep))
    return delays


def failing(exc: BaseException, then: object = None, times: int | None = None):
    """A call that raises ``exc`` (``times`` times, then returns ``then``); counts calls."""
    calls: list[int] = []

    async def call() -> object:
        calls.append(1)
        if times is None or len(calls) <= times:
            raise exc
        return then

    return call, calls


async def test_attempts_are_bounded_and_the_last_error_is_raised_as_it_is(slept):
    error = Flaky("down")
    call, calls = failing(error)
    with pytest.raises(Flaky) as e:
        await retry(call, attempts=3, backoff=0.5, retry_on=Flaky)
    assert e.value is error
    assert len(calls) == 3
    assert len(slept) == 2  # no pause after the last attempt


async def test_success_after_failures_returns_the_result(slept):
    call, calls = failing(Flaky("down"), then="ok", times=2)
    assert await retry(call, attempts=5, backoff=1, retry_on=(Flaky, OSError)) == "ok"
    assert len(calls) == 3


async def test_backoff_doubles_and_is_capped(slept):
    call, _ = failing(Flaky())
    with pytest.raises(Flaky):
        await retry(call, attempts=5, backoff=0.25, retry_on=Flaky)
    assert slept == [0.25, 0.5, 1.0, 2.0]
    slept.clear()
    with pytest.raises(Flaky):
        await retry(call, attempts=5, backoff=0.25, max_backoff=0.6, retry_on=Flaky)
    assert slept == [0.25, 0.5, 0.6, 0.6]
    assert pauses(4, 1.0) == [1.0, 2.0, 4.0]


async def test_a_non_retryable_error_passes_through_at_once(slept):
    call, calls = failing(Broken("bad request"))
    with pytest.raises(Broken):
        await retry(call, attempts=4, backoff=1, retry_on=Flaky)
    assert len(calls) == 1 and slept == []


async def test_a_predicate_classifies_errors(slept):
    call, calls = failing(Flaky("quota"))
    with pytest.raises(Flaky):
        await retry(call, attempts=4, backoff=1, retry_on=lambda e: "quota" not in str(e))
    assert len(calls) == 1


async def test_cancellation_in_a_call_is_not_retried_nor_swallowed(slept):
    # even when the caller retries every Exception
    for retry_on in (Exception, lambda e: True):
        call, calls = failing(asyncio.CancelledError())
        with pytest.raises(asyncio.CancelledError):
            await retry(call, attempts=4, backoff=1, retry_on=retry_on)
        assert len(calls) == 1


async def test_cancellation_during_a_pause_stops_the_retries():
    calls = []
    paused = asyncio.Event()

    async def call() -> None:
        calls.append(1)
        paused.set()  # the loop pauses next
        raise Flaky()

    task = asyncio.create_task(retry(call, attempts=3, backoff=3600, retry_on=Flaky))
    await asyncio.wait_for(paused.wait(), 30)
    await asyncio.sleep(0)  # let it enter the pause
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(calls) == 1


async def test_results_can_be_retried_and_the_last_one_is_returned(slept):
    answers = iter([503, 502, 200])

    async def status() -> int:
        return next(answers)

    assert (
        await retry(
            status,
            attempts=4,
            backoff=1,
            retry_on=OSError,
            retry_result=lambda status: status != 200,
        )
        == 200
    )
    answers = iter([503, 503, 503])
    assert (
        await retry(
            status,
            attempts=3,
            backoff=1,
            retry_on=OSError,
            retry_result=lambda status: status != 200,
        )
        == 503
    )


async def test_at_least_one_attempt_is_made(slept):
    call, calls = failing(Flaky())
    with pytest.raises(Flaky):
        await retry(call, attempts=0, backoff=1, retry_on=Flaky)
    assert len(calls) == 1 and slept == []


async def test_retries_are_logged_but_the_final_failure_is_left_to_the_caller(slept, caplog):
    log = logging.getLogger("test.retry")
    call, _ = failing(Flaky("boom"))
    with caplog.at_level(logging.WARNING, "test.retry"), pytest.raises(Flaky):
        await retry(
            call,
            attempts=3,
            backoff=1,
            retry_on=Flaky,
            log=log,
            what="create pod",
            describe=lambda e: f"it said {e}",
        )
    assert [r.getMessage() for r in caplog.records] == [
        "create pod: attempt 1 failed (it said boom), retrying",
        "create pod: attempt 2 failed (it said boom), retrying",
    ]


async def test_on_failure_sees_every_failed_attempt(slept):
    seen = []
    call, _ = failing(Flaky("boom"))
    with pytest.raises(Flaky):
        await retry(
            call, attempts=3, backoff=1, retry_on=Flaky, on_failure=lambda n, e: seen.append(n)
        )
    assert seen == [1, 2, 3]


# ---- the hub client ----------------------------------------------------------------------------


def hub(statuses: list[int | Exception], max_retries: int = 3) -> tuple[HubClient, list[str]]:
    seen: list[str] = []
    answers = iter(statuses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={})

    client = HubClient(
        "http://hub/hub/api",
        "t",
        max_retries=max_retries,
        backoff=0,
        transport=httpx.MockTransport(handle),
    )
    return client, seen


async def test_hub_client_retries_gateway_errors_then_answers():
    client, seen = hub([503, 502, 200])
    async with client:
        response = await client.request("GET", "/users")
    assert response.status_code == 200 and len(seen) == 3 and client.requests_made == 3


async def test_hub_client_returns_the_last_gateway_error():
    client, seen = hub([503] * 3, max_retries=2)
    async with client:
        response = await client.request("GET", "users")
    assert response.status_code == 503 and len(seen) == 3


async def test_hub_client_does_not_retry_other_answers():
    client, seen = hub([404, 200])
    async with client:
        assert (await client.request("GET", "users/x")).status_code == 404
    assert seen == ["/hub/api/users/x"]


async def test_hub_client_unreachable_after_its_retries():
    client, seen = hub([httpx.ConnectError("refused")] * 4)
    async with client:
        with pytest.raises(HubAPIError, match="hub unreachable") as e:
            await client.request("GET", "users")
    assert e.value.status == 0 and len(seen) == 4
