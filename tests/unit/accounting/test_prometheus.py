"""Usage from a real Prometheus scraping cAdvisor-like series; Prometheus down, then back."""

from __future__ import annotations

import logging
import time

import pytest

from egi_notebooks.services.accounting import db
from egi_notebooks.services.accounting.apel import ApelRenderer, export
from egi_notebooks.services.accounting.prometheus import PrometheusUsage
from egi_notebooks.services.accounting.store import Observation, Store, make_vmuuid
from tests.harness.hub import free_port
from tests.harness.prometheus import CadvisorExporter, prometheus_or_skip

from .apel_parser import parse_message

GiB = 2**30


@pytest.fixture(scope="module")
def exporter():
    exporter = CadvisorExporter().start()
    yield exporter
    exporter.stop()


@pytest.fixture(scope="module")
def prometheus(exporter):
    server = prometheus_or_skip([exporter.address])
    yield server
    server.stop()


@pytest.fixture
def sessions(tmp_path):
    engine, sessions = db.open_database(f"sqlite:///{tmp_path / 'a.sqlite'}")
    yield sessions
    engine.dispose()


def pod_series(exporter: CadvisorExporter, ns: str, pod: str, cpu: float, rx: float) -> None:
    cpu_metric = "container_cpu_usage_seconds_total"
    exporter.set(cpu_metric, cpu, namespace=ns, pod=pod, container="notebook", cpu="total")
    exporter.set(cpu_metric, cpu / 10, namespace=ns, pod=pod, container="sidecar", cpu="total")
    # the pod's own cgroup (container="") and the pause container: counted already, skipped
    exporter.set(cpu_metric, 9999, namespace=ns, pod=pod, container="", cpu="total")
    exporter.set(cpu_metric, 9999, namespace=ns, pod=pod, container="POD", cpu="total")
    exporter.set(
        "container_memory_working_set_bytes", 3 * GiB, namespace=ns, pod=pod, container="notebook"
    )
    for metric in (
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
    ):
        # containerd exports the pod's network once per container: counted once per interface
        for container in ("", "notebook"):
            exporter.set(metric, rx, namespace=ns, pod=pod, container=container, interface="eth0")


def wait_scrapes(n: int = 3) -> None:
    time.sleep(n * 1.0 + 0.5)


def session(store: Store, now: int, pod: str, start: int) -> Observation:
    return Observation(
        vmuuid=make_vmuuid("t", pod, "", start), user=pod, server_name="", start_time=start,
        primary_vo="vo.example.org", namespace="hub", pod_name=pod,
    )  # fmt: skip


async def test_usage_from_real_prometheus_and_prometheus_down(
    prometheus, exporter, sessions, tmp_path, caplog
):
    exporter.set("container_cpu_usage_seconds_total", 77)  # a series without labels: ignored
    pod_series(exporter, "other", "jupyter-alice", 5000, 50 * GiB)  # same pod, other namespace
    start = int(time.time()) - 1
    pod_series(exporter, "hub", "jupyter-alice", 100, 1 * GiB)
    wait_scrapes()
    pod_series(exporter, "hub", "jupyter-alice", 250, 3 * GiB)
    wait_scrapes()
    store = Store(sessions)
    obs = session(store, start, "jupyter-alice", start)
    end = int(time.time())
    store.apply_poll([obs], end)
    store.apply_poll([], end + 1)  # ended at `end`
    pod_series(exporter, "hub", "jupyter-alice", 900, 9 * GiB)  # after the end: not counted

    renderer = ApelRenderer(site_name="TEST")
    queue_messages: list[str] = []
    # Prometheus down: the record goes out without usage
    down = PrometheusUsage(url=f"http://127.0.0.1:{free_port()}", timeout=1)
    with caplog.at_level(logging.WARNING):
        assert await down.enrich(sessions) == 0
    assert "not measured" in caplog.text
    export(sessions, renderer, queue_messages.append)
    (first,) = parse_message(queue_messages[-1])
    assert "CpuDuration" not in first and "NetworkInbound" not in first
    # Prometheus back: measured, and the record is sent again with the usage
    up = PrometheusUsage(url=prometheus.url)
    assert await up.enrich(sessions) == 1
    assert await up.enrich(sessions) == 0  # a completed session is measured once
    assert export(sessions, renderer, queue_messages.append).records == 1
    (second,) = parse_message(queue_messages[-1])
    assert second["CpuDuration"] == 275  # 250 + 25 (sidecar), seconds
    assert second["NetworkInbound"] == 3 and second["NetworkOutbound"] == 3  # GB
    assert second["VMUUID"] == first["VMUUID"] and second["Status"] == "completed"


async def test_old_docker_shim_label_names(prometheus, exporter, sessions):
    start = int(time.time()) - 1
    exporter.set(
        "container_cpu_usage_seconds_total", 42, namespace="hub", pod_name="jupyter-old",
        container_name="notebook",
    )  # fmt: skip
    wait_scrapes(2)
    store = Store(sessions)
    store.apply_poll([session(store, start, "jupyter-old", start)], int(time.time()))
    usage = PrometheusUsage(
        url=prometheus.url, pod_label="pod_name", container_filter='container_name!=""'
    )
    assert await usage.enrich(sessions) == 1
    with sessions() as s:
        from egi_notebooks.services.accounting.models import Session

        (row,) = s.query(Session).all()
    assert row.cpu_seconds == 42 and row.end_time is None


async def test_garbage_answer_is_logged_and_skipped(sessions, caplog):
    from tests.harness.ams import AMSEmulator  # any HTTP server answering non-PromQL

    with AMSEmulator() as garbage:
        store = Store(sessions)
        now = int(time.time())
        store.apply_poll([session(store, now, "jupyter-x", now - 10)], now)
        with caplog.at_level(logging.WARNING):
            assert await PrometheusUsage(url=garbage.url).enrich(sessions) == 0
        assert "not measured" in caplog.text
