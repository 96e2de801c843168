"""Bounded, timed Kubernetes API calls with a clear error for the spawn page.

Every call has a timeout; timeouts, 429, 5xx and quota 403s are retried with exponential
backoff a bounded number of times; then :class:`KubernetesTrouble` says in one sentence
what could not be done and why. JupyterHub shows ``str(exc)`` as "Spawn failed: ...".
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes_asyncio.client.rest import ApiException

from ..retry import retry

T = TypeVar("T")
RETRYABLE_STATUS = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    timeout: float = 5.0
    backoff: float = 0.2  # first pause; doubles each time
    max_backoff: float = 2.0


class KubernetesTrouble(RuntimeError):
    """A Kubernetes API step of a spawn failed for good; the message is for the user."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.jupyterhub_message = message


def api_message(exc: ApiException) -> str:
    """The ``message`` of a Kubernetes Status body, else the HTTP reason."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason or "")
    except (ValueError, AttributeError):
        return str(exc.reason or "")


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | OSError):
        return True
    if isinstance(exc, ApiException):
        if exc.status in RETRYABLE_STATUS:
            return True
        # ResourceQuota rejections are 403 "exceeded quota"; another object may go away.
        return exc.status == 403 and "quota" in api_message(exc).lower()
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        if exc.status == 403 and "quota" in api_message(exc).lower():
            return "the namespace's resource quota is exhausted"
        return f"the Kubernetes API answered {exc.status} {exc.reason or ''}".rstrip()
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "the Kubernetes API did not answer in time"
    return f"the Kubernetes API could not be reached ({type(exc).__name__})"


async def call(
    fn: Callable[[], Awaitable[T]],
    what: str,
    policy: RetryPolicy,
    log: logging.Logger | Any,
    accept: Callable[[ApiException], Any] | None = None,
) -> T:
    """Run ``fn()`` with the policy's timeout and retries.

    ``accept(exc)`` may turn an ApiException into a result (e.g. 404 -> None); it returns
    ``NotImplemented`` to let the normal handling proceed.
    """

    async def attempt() -> T:
        try:
            return await asyncio.wait_for(fn(), policy.timeout)
        except ApiException as exc:
            if accept is not None:
                result = accept(exc)
                if result is not NotImplemented:
                    return result
            raise

    try:
        return await retry(
            attempt,
            attempts=policy.attempts,
            backoff=policy.backoff,
            max_backoff=policy.max_backoff,
            retry_on=_retryable,
            log=log,
            what=what,
            describe=_describe,
        )
    except (ApiException, TimeoutError, OSError) as last:
        status = last.status if isinstance(last, ApiException) else None
        tries = f" after {policy.attempts} attempts" if _retryable(last) else ""
        raise KubernetesTrouble(f"Could not {what}: {_describe(last)}{tries}.", status) from last


def not_found_is_none(exc: ApiException) -> Any:
    return None if exc.status == 404 else NotImplemented


def gone_is_done(exc: ApiException) -> Any:
    """For deletions: an object that is already gone is deleted."""
    return True if exc.status == 404 else NotImplemented
