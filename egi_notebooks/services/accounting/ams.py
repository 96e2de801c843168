"""Sending the queued APEL messages straight to the ARGO Messaging Service (optional).

The same protocol as ``ssmsend`` with ``protocol = AMS``: each message of the dirq queue is
locked, published to the AMS topic, and removed from the queue only after AMS acknowledged it
with a message id. ``argo-ams-library`` is synchronous (requests); this module speaks the AMS
REST API with httpx instead, so the service's event loop never blocks. The token travels in the
``x-api-key`` header, never in a URL (URLs end up in logs).
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass

import httpx
from traitlets import Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from .dirq_queue import OutgoingQueue


class AMSError(Exception):
    pass


@dataclass
class SendOutcome:
    sent: int = 0
    failed: int = 0


class AMSSender(LoggingConfigurable):
    url = Unicode(
        "", config=True, help="ARGO AMS base URL, e.g. https://msg.argo.grnet.gr ('' = off)."
    )
    project = Unicode("accounting", config=True, help="AMS project.")
    topic = Unicode("eu-egi-cloud-accounting", config=True, help="AMS topic for cloud records.")
    token = Unicode("", config=True, help="AMS API token (secret: never logged).")
    timeout = Float(20, config=True, help="Timeout in seconds of one publish request.")
    max_retries = Integer(3, config=True, help="Retries of one message within one run.")
    backoff = Float(1.0, config=True, help="First retry delay in seconds (doubles each time).")

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def publish_url(self) -> str:
        return f"{self.url.rstrip('/')}/v1/projects/{self.project}/topics/{self.topic}:publish"

    async def publish(self, client: httpx.AsyncClient, name: str, message: str) -> str:
        """Publish one message; its AMS id, or AMSError for anything but a clear ack."""
        body = {
            "messages": [
                {
                    "attributes": {"empaid": name},
                    "data": base64.b64encode(message.encode("utf-8")).decode("ascii"),
                }
            ]
        }
        try:
            response = await client.post(self.publish_url(), json=body)
        except httpx.HTTPError as e:
            raise AMSError(f"AMS unreachable: {type(e).__name__}") from e
        if response.status_code != 200:
            raise AMSError(f"AMS answered HTTP {response.status_code}: {response.text[:200]!r}")
        try:
            ids = response.json()["messageIds"]
        except (ValueError, KeyError, TypeError) as e:
            raise AMSError(f"garbage answer from AMS: {response.text[:200]!r}") from e
        if not (isinstance(ids, list) and len(ids) == 1 and isinstance(ids[0], str | int)):
            raise AMSError(f"garbage answer from AMS: {response.text[:200]!r}")
        return str(ids[0])

    async def send_queue(self, queue: OutgoingQueue) -> SendOutcome:
        """Send every message of the queue; keep (unlocked) what was not acknowledged."""
        outcome = SendOutcome()
        if not self.token:
            raise AMSError("AMSSender.token is not set")
        async with httpx.AsyncClient(
            timeout=self.timeout, headers={"x-api-key": self.token}
        ) as client:
            for name, message in queue.locked():
                acked = None
                for attempt in range(self.max_retries + 1):
                    try:
                        acked = await self.publish(client, name, message)
                        break
                    except AMSError as e:
                        self.log.warning("AMS: message %s, attempt %d: %s", name, attempt + 1, e)
                        if attempt < self.max_retries:
                            await asyncio.sleep(self.backoff * 2**attempt)
                if acked is None:
                    queue.unlock(name)  # kept for the next run
                    outcome.failed += 1
                else:
                    queue.remove(name)
                    outcome.sent += 1
                    self.log.debug("AMS: message %s acknowledged as %s", name, acked)
        if outcome.sent or outcome.failed:
            self.log.info("AMS: %d messages sent, %d kept for later", outcome.sent, outcome.failed)
        return outcome
