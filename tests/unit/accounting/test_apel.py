"""APEL messages parsed back strictly: every field, every unit; the dirq queue read back."""

from __future__ import annotations

import pytest
from dirq.QueueSimple import QueueSimple
from sqlalchemy import update

from egi_notebooks.services.accounting.apel import ApelRenderer, export
from egi_notebooks.services.accounting.dirq_queue import OutgoingQueue
from egi_notebooks.services.accounting.models import Session
from egi_notebooks.services.accounting.store import Store

from .apel_parser import parse_message
from .test_store import T0, obs

GiB, MiB = 2**30, 2**20


def renderer(**kw) -> ApelRenderer:
    kw.setdefault("site_name", "EGI-NOTEBOOKS-TEST")
    kw.setdefault("cloud_compute_service", "notebooks.example.org")
    return ApelRenderer(**kw)


def read_queue(path) -> list[str]:
    """Read the queue as ssmsend does, with the dirq package itself."""
    queue = QueueSimple(str(path))
    messages = []
    for name in queue:
        assert queue.lock(name)
        messages.append(queue.get(name).decode())
        queue.unlock(name)
    return messages


def all_records(path) -> dict[str, dict]:
    return {r["VMUUID"]: r for m in read_queue(path) for r in parse_message(m)}


def test_units_and_fields(sessions, tmp_path):
    store = Store(sessions)
    store.apply_poll(
        [
            obs(
                flavor="large",
                image="eginotebooks/single-user:1.2",
                cpu_request=1.5,
                memory_request=4 * GiB,
                disk_request=20 * GiB,
                pod_name="jupyter-alice",
            ),
            obs("bob", "", T0 + 10, vo=None),
        ],
        T0 + 3600,
    )
    store.apply_poll([obs("bob", "", T0 + 10, vo=None)], T0 + 7200)  # alice ended at T0+3600
    with sessions.begin() as s:  # usage as Prometheus reports it: seconds and bytes
        s.execute(
            update(Session)
            .where(Session.user == "alice")
            .values(cpu_seconds=1234.6, network_in=3 * GiB + 1, network_out=int(0.4 * GiB))
        )
    queue = OutgoingQueue(tmp_path / "q")
    outcome = export(sessions, renderer(benchmark_type="HEPSPEC", benchmark=10.5), queue.add)
    assert (outcome.records, outcome.messages) == (2, 1)
    records = all_records(tmp_path / "q")
    alice = next(r for r in records.values() if r["LocalUserId"] == "alice")
    assert alice == {
        "VMUUID": alice["VMUUID"],
        "SiteName": "EGI-NOTEBOOKS-TEST",
        "CloudComputeService": "notebooks.example.org",
        "MachineName": "jupyter-alice",
        "LocalUserId": "alice",
        "LocalGroupId": "vo.example.org",
        "GlobalUserName": "alice",
        "FQAN": "/vo.example.org/role=NULL/capability=NULL",
        "Status": "completed",
        "StartTime": T0,
        "EndTime": T0 + 3600,
        "SuspendDuration": 0,
        "WallDuration": 3600,  # seconds
        "CpuDuration": 1235,  # seconds
        "CpuCount": 2,  # 1.5 CPUs requested: an integer count, rounded up
        "NetworkInbound": 3,  # GB, not bytes
        "NetworkOutbound": 0,
        "PublicIPCount": 0,
        "Memory": 4096,  # MB
        "Disk": 20,  # GB
        "BenchmarkType": "HEPSPEC",
        "Benchmark": 10.5,
        "ImageId": "eginotebooks/single-user:1.2",
        "CloudType": "EGI Notebooks",
    }
    bob = next(r for r in records.values() if r["LocalUserId"] == "bob")
    # still running, VO and usage unknown: those fields are left out, not invented
    assert bob["Status"] == "started" and "EndTime" not in bob
    assert bob["WallDuration"] == 7200 - 10
    assert not {"FQAN", "LocalGroupId", "CpuDuration", "NetworkInbound"} & bob.keys()


def test_several_vos_map_to_their_own_fqans(sessions, tmp_path):
    vos = ["vo.access.egi.eu", "vo.notebooks.egi.eu", "biomed", "vo.other.eu"]
    Store(sessions).apply_poll(
        [obs(f"user{i}", "", T0, vo=vo) for i, vo in enumerate(vos)], T0 + 60
    )
    fqans = {
        "vo.access.egi.eu": "/vo.access.egi.eu/Role=NULL/Capability=NULL",
        "vo.notebooks.egi.eu": "/vo.notebooks.egi.eu/Role=member/Capability=NULL",
        "biomed": "/biomed/Role=NULL/Capability=NULL",
    }
    queue = OutgoingQueue(tmp_path / "q")
    export(sessions, renderer(vo_fqans=fqans), queue.add)
    got = {r["LocalGroupId"]: r["FQAN"] for r in all_records(tmp_path / "q").values()}
    assert got == {**fqans, "vo.other.eu": "/vo.other.eu/role=NULL/capability=NULL"}


def test_updated_sessions_are_sent_again_and_only_they(sessions, tmp_path):
    store = Store(sessions)
    store.apply_poll([obs(), obs("bob")], T0 + 60)
    path = tmp_path / "q"
    queue = OutgoingQueue(path)
    assert export(sessions, renderer(), queue.add).records == 2
    assert export(sessions, renderer(), queue.add).records == 0  # nothing changed
    store.apply_poll([obs("bob")], T0 + 120)  # alice ended
    assert export(sessions, renderer(), queue.add).records == 1
    messages = [parse_message(m) for m in read_queue(path)]
    statuses = sorted((r["LocalUserId"], r["Status"]) for m in messages for r in m)
    assert statuses == [("alice", "completed"), ("alice", "started"), ("bob", "started")]


def test_many_sessions_are_split_into_messages(sessions, tmp_path):
    Store(sessions).apply_poll([obs(f"u{i}") for i in range(1201)], T0 + 60)
    queue = OutgoingQueue(tmp_path / "q")
    outcome = export(sessions, renderer(records_per_message=500), queue.add)
    assert (outcome.records, outcome.messages) == (1201, 3)
    assert len(all_records(tmp_path / "q")) == 1201


def test_a_crash_while_writing_loses_nothing(sessions, tmp_path):
    Store(sessions).apply_poll([obs(f"u{i}") for i in range(10)], T0 + 60)
    queue = OutgoingQueue(tmp_path / "q")
    calls = []

    def flaky_write(message: str) -> None:
        calls.append(message)
        if len(calls) == 2:
            raise OSError("disk full")
        queue.add(message)

    with pytest.raises(OSError):
        export(sessions, renderer(records_per_message=4), flaky_write)
    export(sessions, renderer(records_per_message=4), queue.add)
    assert len(all_records(tmp_path / "q")) == 10


def test_values_cannot_inject_fields(sessions, tmp_path):
    Store(sessions).apply_poll([obs("evil\nStatus: completed\n%%", image="x\r\n%%")], T0 + 60)
    queue = OutgoingQueue(tmp_path / "q")
    export(sessions, renderer(), queue.add)
    (record,) = all_records(tmp_path / "q").values()
    assert record["Status"] == "started"
    assert record["LocalUserId"] == "evil Status: completed %"


def test_site_name_is_required(sessions):
    Store(sessions).apply_poll([obs()], T0 + 60)
    with pytest.raises(ValueError, match="site_name"):
        export(sessions, ApelRenderer(), lambda m: None)


def test_records_per_message_is_bounded():
    with pytest.raises(Exception, match="records_per_message"):
        ApelRenderer(records_per_message=5000)
