"""One bounded retry loop for every network call of the project.

Each caller states how many attempts it makes (operators configure them: ``retries``,
``max_retries``, ``k8s_api_attempts``), which failures are worth another attempt, and what
a failure is logged as; the loop, the backoff and the handling of cancellation live here.

``jupyterhub.utils.exponential_backoff`` is not used: it retries until a deadline (not a
number of attempts), only on a falsy result (an exception ends it at once) and sleeps a
random time, so it cannot keep "at most N attempts" nor tell retryable errors apart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


def _matches(retry_on: RetryOn, exc: BaseException) -> bool:
    if isinstance(retry_on, type | tuple):
        return isinstance(exc, retry_on)
    return bool(retry_on(exc))


def pauses(attempts: int, backoff: float, max_backoff: float | None = None) -> list[float]:
    """The pauses between ``attempts`` attempts: ``backoff``, doubling, at most ``max_backoff``."""
    delays = []
    delay = backoff
    for _ in range(max(1, attempts) - 1):
        delays.append(delay if max_backoff is None else min(delay, max_backoff))
        delay *= 2
    return delays


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    backoff: float,
    retry_on: RetryOn,
    log: logging.Logger | logging.LoggerAdapter | Any | None = None,
    what: str = "",
    max_backoff: float | None = None,
    retry_result: Callable[[T], bool] | None = None,
    describe: Callable[[BaseException], str] = str,
    on_failure: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Await ``call()`` up to ``attempts`` times (at least once), pausing in between.

    - An exception matching ``retry_on`` (classes, or a predicate) is retried; after the last
      attempt it is raised as it is, for the caller to turn into its own error. Any other
      exception is raised at once. Cancellation is never retried nor swallowed.
    - ``retry_result(result)`` true retries a result (an HTTP 503 answer, say); the last
      attempt's result is returned whatever it is.
    - The pause before attempt ``n + 1`` is ``backoff * 2**(n - 1)``, at most ``max_backoff``.
    - Each failed attempt but the last is logged as a warning on ``log``
      (``"<what>: attempt <n> failed (<describe(exc)>), retrying"``), unless ``on_failure``
      is given: then ``on_failure(n, exc)`` is called for every failed attempt instead, for
      callers with their own message.
    """
    delays = pauses(attempts, backoff, max_backoff)
    attempt = 0
    while True:
        attempt += 1
        last = attempt > len(delays)
        try:
            result = await call()
        except Exception as exc:  # BaseException (cancellation, exit) always goes through
            if not _matches(retry_on, exc):
                raise
            if on_failure is not None:
                on_failure(attempt, exc)
            elif log is not None and not last:
                log.warning("%s: attempt %d failed (%s), retrying", what, attempt, describe(exc))
            if last:
                raise
        else:
            if last or retry_result is None or not retry_result(result):
                return result
        await asyncio.sleep(delays[attempt - 1])
