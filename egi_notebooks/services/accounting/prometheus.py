"""Optional usage from Prometheus (cAdvisor series) through the PromQL HTTP API.

Series are matched by the ``namespace`` and ``pod`` labels (what cAdvisor exports with
containerd and CRI-O, and with Docker since Kubernetes 1.16), not by Docker-shim container
names; the label names are traits for older set-ups (``pod_name``). Each figure is the maximum
over the session's life of a counter (CPU seconds, network bytes), evaluated at the session's
end, so one query per figure answers for the whole session.

Prometheus unreachable: the sessions keep no usage, their records go out without it, and the
next cycle asks again; new figures bump the session's version so its record is sent again.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import sessionmaker
from traitlets import Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from .models import Session


class PrometheusError(Exception):
    pass


@dataclass
class Usage:
    cpu_seconds: float | None
    memory_peak: int | None
    network_in: int | None
    network_out: int | None


def _label_value(value: str) -> str:
    """Escape a value for a PromQL string literal."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class PrometheusUsage(LoggingConfigurable):
    url = Unicode("", config=True, help="Prometheus base URL ('' = no usage figures).")
    timeout = Float(10, config=True, help="Timeout in seconds of one PromQL query.")
    namespace_label = Unicode("namespace", config=True, help="Label holding the namespace.")
    pod_label = Unicode("pod", config=True, help="Label holding the pod name.")
    container_filter = Unicode(
        'container!="",container!="POD"',
        config=True,
        help="Extra matchers selecting per-container series (not the pod's total or pause).",
    )
    refresh_interval = Integer(
        3600, config=True, help="Seconds between two measurements of a running session."
    )
    batch = Integer(200, config=True, help="Sessions measured per cycle, at most.")
    concurrency = Integer(4, config=True, help="PromQL queries at once, at most.")

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def queries(self, namespace: str, pod: str, seconds: int) -> dict[str, str]:
        pod_match = (
            f'{self.namespace_label}="{_label_value(namespace)}",'
            f'{self.pod_label}="{_label_value(pod)}"'
        )
        containers = f"{pod_match},{self.container_filter}" if self.container_filter else pod_match
        window = f"[{max(1, seconds)}s]"
        return {
            "cpu_seconds": f"sum(max_over_time(container_cpu_usage_seconds_total{{{containers}}}"
            f"{window}))",
            "memory_peak": f"sum(max_over_time(container_memory_working_set_bytes{{{containers}}}"
            f"{window}))",
            # network series are per pod (and per interface): max by interface removes the
            # duplicates that some runtimes export per container
            "network_in": "sum(max by (interface) (max_over_time("
            f"container_network_receive_bytes_total{{{pod_match}}}{window})))",
            "network_out": "sum(max by (interface) (max_over_time("
            f"container_network_transmit_bytes_total{{{pod_match}}}{window})))",
        }

    async def query(self, client: httpx.AsyncClient, promql: str, at: int) -> float | None:
        """One instant query; None when no series matched; PrometheusError when unusable."""
        try:
            response = await client.get(
                f"{self.url.rstrip('/')}/api/v1/query", params={"query": promql, "time": at}
            )
        except httpx.HTTPError as e:
            raise PrometheusError(f"Prometheus unreachable: {type(e).__name__}") from e
        try:
            body = response.json()
            if body.get("status") != "success":
                raise PrometheusError(f"query failed: {body.get('error', response.status_code)}")
            result = body["data"]["result"]
            if not result:
                return None
            value = float(result[0]["value"][1])
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise PrometheusError(f"garbage answer from Prometheus: {response.text[:200]!r}") from e
        return value if math.isfinite(value) and value >= 0 else None

    async def measure(self, client: httpx.AsyncClient, row, now: int) -> Usage:
        at = min(row.end_time, now) if row.end_time is not None else now
        figures = {}
        for name, promql in self.queries(row.namespace, row.pod_name, at - row.start_time).items():
            figures[name] = await self.query(client, promql, at)

        def as_int(v: float | None) -> int | None:
            return None if v is None else int(v)

        return Usage(
            cpu_seconds=figures["cpu_seconds"],
            memory_peak=as_int(figures["memory_peak"]),
            network_in=as_int(figures["network_in"]),
            network_out=as_int(figures["network_out"]),
        )

    def due(self, sessions: sessionmaker, now: int) -> list:
        """Sessions to measure: ended after their last measurement, or running and stale."""
        with sessions() as db:
            return db.execute(
                select(
                    Session.id,
                    Session.namespace,
                    Session.pod_name,
                    Session.start_time,
                    Session.end_time,
                )  # fmt: skip
                .where(Session.pod_name.is_not(None), Session.namespace.is_not(None))
                .where(
                    or_(
                        Session.usage_time.is_(None),
                        Session.end_time.is_not(None) & (Session.usage_time < Session.end_time),
                        Session.end_time.is_(None)
                        & (Session.usage_time < now - self.refresh_interval),
                    )
                )
                .order_by(Session.id)
                .limit(self.batch)
            ).all()

    @staticmethod
    def save(sessions: sessionmaker, row_id: int, usage: Usage, at: int) -> None:
        with sessions.begin() as db:
            db.execute(
                update(Session)
                .where(Session.id == row_id)
                .values(
                    cpu_seconds=usage.cpu_seconds,
                    memory_peak=usage.memory_peak,
                    network_in=usage.network_in,
                    network_out=usage.network_out,
                    usage_time=at,
                    version=Session.version + 1,
                )
            )

    async def enrich(self, sessions: sessionmaker, now: int | None = None) -> int:
        """Measure the due sessions; the number measured. Failures leave sessions as they were."""
        now = int(time.time()) if now is None else now
        rows = await asyncio.to_thread(self.due, sessions, now)
        if not rows:
            return 0
        semaphore = asyncio.Semaphore(self.concurrency)
        measured = 0
        async with httpx.AsyncClient(timeout=self.timeout) as client:

            async def one(row) -> None:
                nonlocal measured
                async with semaphore:
                    usage = await self.measure(client, row, now)
                at = min(row.end_time, now) if row.end_time is not None else now
                await asyncio.to_thread(self.save, sessions, row.id, usage, at)
                measured += 1

            results = await asyncio.gather(*(one(r) for r in rows), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            self.log.warning(
                "Prometheus: %d of %d sessions not measured (%s); retried next cycle",
                len(errors), len(rows), errors[0],
            )  # fmt: skip
        return measured
