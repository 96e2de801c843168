"""APEL cloud usage records, format v0.4, with the units the APEL repository expects.

Units (the old accounting sent bytes here): WallDuration, CpuDuration in seconds; Memory in
MB; Disk, NetworkInbound, NetworkOutbound in GB; CpuCount an integer; StartTime, EndTime epoch
seconds. APEL stores every one of these as an integer. MB and GB are binary (2**20, 2**30), as
Kubernetes quantities (``Mi``/``Gi``) and OpenStack flavors count them.

A field whose value is not known (no usage from Prometheus yet, no VO) is left out rather than
sent as a made-up number; the record is re-sent when the value becomes known.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import sessionmaker
from traitlets import Dict, Float, Integer, Unicode, validate
from traitlets.config import LoggingConfigurable

from .models import Session

HEADER = "APEL-cloud-message: v0.4"
SEPARATOR = "%%"
MB = 2**20
GB = 2**30

# the order of the v0.4 fields in a record
FIELDS = (
    "VMUUID",
    "SiteName",
    "CloudComputeService",
    "MachineName",
    "LocalUserId",
    "LocalGroupId",
    "GlobalUserName",
    "FQAN",
    "Status",
    "StartTime",
    "EndTime",
    "SuspendDuration",
    "WallDuration",
    "CpuDuration",
    "CpuCount",
    "NetworkType",
    "NetworkInbound",
    "NetworkOutbound",
    "PublicIPCount",
    "Memory",
    "Disk",
    "BenchmarkType",
    "Benchmark",
    "StorageRecordId",
    "ImageId",
    "CloudType",
)

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")
# APEL's loader splits a message on every "%%", wherever it is, not only on separator lines.
_SEPARATOR_RUN = re.compile(r"%{2,}")

# the columns a record needs (selected as plain rows: no ORM objects while streaming)
COLUMNS = (
    Session.id,
    Session.version,
    Session.vmuuid,
    Session.user,
    Session.server_name,
    Session.primary_vo,
    Session.image,
    Session.cpu_request,
    Session.memory_request,
    Session.disk_request,
    Session.pod_name,
    Session.start_time,
    Session.last_seen,
    Session.end_time,
    Session.cpu_seconds,
    Session.network_in,
    Session.network_out,
)


# values cleaned once per message by _settings (and the FQAN cache)
_PRECLEANED = frozenset(
    {"SiteName", "CloudComputeService", "CloudType", "BenchmarkType", "FQAN", "Benchmark"}
)


def clean(value: object) -> str:
    """One line, no control characters and no ``%%`` anywhere (a run of ``%`` becomes one):
    a value can never inject a field or a record separator."""
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if not text.isprintable():  # fast path: most values are plain
        text = _UNSAFE.sub(" ", text)
    if SEPARATOR in text:
        text = _SEPARATOR_RUN.sub("%", text)
    return text.strip()


def _gb(value: int | None) -> int | None:
    return None if value is None else int(round(value / GB))


@dataclass
class ExportOutcome:
    records: int = 0
    messages: int = 0


class ApelRenderer(LoggingConfigurable):
    """Site-wide APEL settings and the rendering of one record."""

    site_name = Unicode(
        "", config=True, help="GOCDB site name of the records (SiteName); required for APEL."
    )
    cloud_type = Unicode("EGI Notebooks", config=True, help="CloudType of the records.")
    cloud_compute_service = Unicode(
        "", config=True, help="CloudComputeService of the records (the GOCDB service name)."
    )
    vo_fqans = Dict(
        value_trait=Unicode(),
        config=True,
        help="FQAN per VO, e.g. {'vo.example.org': '/vo.example.org/role=NULL/capability=NULL'};"
        " VOs not listed get fqan_template.",
    )
    fqan_template = Unicode(
        "/{vo}/role=NULL/capability=NULL",
        config=True,
        help="FQAN of a VO missing from vo_fqans ({vo} is replaced); '' leaves FQAN out.",
    )
    benchmark_type = Unicode("", config=True, help="BenchmarkType (e.g. HEPSPEC); '' = none.")
    benchmark = Float(0.0, config=True, help="Benchmark value per CPU (with benchmark_type).")
    records_per_message = Integer(
        500, config=True, help="Records per SSM message (APEL accepts up to 1000)."
    )

    @validate("records_per_message")
    def _check_records_per_message(self, proposal):
        value = proposal["value"]
        if not 1 <= value <= 1000:
            raise ValueError(f"records_per_message must be 1..1000, not {value}")
        return value

    def fqan(self, vo: str | None) -> str | None:
        """The FQAN of exactly this session's VO (never the last configured one)."""
        if not vo:
            return None
        if vo in self.vo_fqans:
            return self.vo_fqans[vo]
        return self.fqan_template.format(vo=vo) if self.fqan_template else None

    def _settings(self) -> dict[str, Any]:
        """Trait values read once per message (traitlets attribute access is slow)."""
        # site-wide values are cleaned once here, not once per record
        return {
            "site": clean(self.site_name),
            "service": clean(self.cloud_compute_service) or None,
            "cloud_type": clean(self.cloud_type),
            "benchmark_type": clean(self.benchmark_type) or None,
            "benchmark": self.benchmark if self.benchmark_type else None,
            "fqans": {},
        }

    def record(self, row, settings: dict[str, Any] | None = None) -> dict[str, object]:
        """Field -> value of one record from a session row (None values are left out)."""
        settings = settings or self._settings()
        fqans: dict[str, str | None] = settings["fqans"]
        if row.primary_vo not in fqans:
            fqan = self.fqan(row.primary_vo)
            fqans[row.primary_vo] = clean(fqan) if fqan else None
        end = row.end_time if row.end_time is not None else row.last_seen
        wall = max(0, end - row.start_time)
        cpu_count = max(1, math.ceil(row.cpu_request)) if row.cpu_request else 1
        machine = row.pod_name or (f"{row.user}/{row.server_name}" if row.server_name else row.user)
        fields: dict[str, object] = {
            "VMUUID": row.vmuuid,
            "SiteName": settings["site"],
            "CloudComputeService": settings["service"],
            "MachineName": machine,
            "LocalUserId": row.user,
            "LocalGroupId": row.primary_vo,
            "GlobalUserName": row.user,
            "FQAN": fqans[row.primary_vo],
            "Status": "started" if row.end_time is None else "completed",
            "StartTime": row.start_time,
            "EndTime": row.end_time,
            "SuspendDuration": 0,
            "WallDuration": wall,
            "CpuDuration": None if row.cpu_seconds is None else int(round(row.cpu_seconds)),
            "CpuCount": cpu_count,
            "NetworkInbound": _gb(row.network_in),
            "NetworkOutbound": _gb(row.network_out),
            "PublicIPCount": 0,
            "Memory": None if row.memory_request is None else int(round(row.memory_request / MB)),
            "Disk": _gb(row.disk_request),
            "BenchmarkType": settings["benchmark_type"],
            "Benchmark": settings["benchmark"],
            "ImageId": row.image,
            "CloudType": settings["cloud_type"],
        }
        return {k: v for k, v in fields.items() if v is not None and v != ""}

    def render_record(self, row, settings: dict | None = None) -> str:
        fields = self.record(row, settings)
        # record() builds its dict in FIELDS order: no sorting needed
        return "".join(
            [
                f"{key}: {value if key in _PRECLEANED else clean(value)}\n"
                for key, value in fields.items()
            ]
        )

    def render_message(self, rows) -> str:
        settings = self._settings()
        parts = [HEADER, "\n"]
        for row in rows:
            parts.append(self.render_record(row, settings))
            parts.append(SEPARATOR + "\n")
        return "".join(parts)


def iter_unsent(sessions: sessionmaker, batch: int) -> Iterator[list]:
    """Batches of session rows whose latest version was not written out yet.

    Keyset pagination by id (not OFFSET, not one long cursor): memory stays flat however many
    sessions there are, and writers are never blocked by a reader.
    """
    last_id = 0
    while True:
        with sessions() as db:
            rows = db.execute(
                select(*COLUMNS)
                .where(Session.sent_version < Session.version, Session.id > last_id)
                .order_by(Session.id)
                .limit(batch)
            ).all()
        if not rows:
            return
        yield rows
        last_id = rows[-1].id


def export(
    sessions: sessionmaker, renderer: ApelRenderer, write: Callable[[str], object]
) -> ExportOutcome:
    """Render every unsent record into messages and hand each to ``write`` (the queue).

    A message is marked sent only after ``write`` returned: a crash in between re-sends it,
    which APEL tolerates (it keeps the latest record per VMUUID); nothing is lost.
    """
    outcome = ExportOutcome()
    if not renderer.site_name:
        raise ValueError("ApelRenderer.site_name is not set: APEL rejects records without it")
    for rows in iter_unsent(sessions, renderer.records_per_message):
        write(renderer.render_message(rows))
        with sessions.begin() as db:
            _mark_sent(db, rows)
        outcome.records += len(rows)
        outcome.messages += 1
    return outcome


def _mark_sent(db, rows) -> None:
    """Remember the version written (only that one: a change made meanwhile goes next time)."""
    table = cast(Table, Session.__table__)
    db.connection().execute(
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .where(table.c.sent_version < bindparam("rendered"))
        .values(sent_version=bindparam("rendered")),
        [{"row_id": row.id, "rendered": row.version} for row in rows],
    )
