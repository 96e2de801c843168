"""Probe results: one run's outcome, the rules that turn runs into a Nagios status, and the
history kept on disk so that a restarted service still knows its recent runs.

This module imports nothing from JupyterHub or tornado: ``check.py`` (the Nagios plugin)
shares the status names and exit codes with it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OK, WARNING, CRITICAL, UNKNOWN = "OK", "WARNING", "CRITICAL", "UNKNOWN"

#: Nagios plugin exit codes.
EXIT_CODES = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}

#: Phases of one run, in order (optional ones are skipped when not configured).
PHASES = ("user", "cleanup", "spawn", "kernel", "execute", "home", "token", "shutdown", "stop")

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """The outcome of one probe run."""

    started: float
    finished: float
    status: str
    message: str
    #: phase name -> seconds, in the order they ran (a failed phase has its time to failure)
    phases: dict[str, float] = field(default_factory=dict)
    #: the phase that failed (CRITICAL) or was slow (WARNING), if any
    phase: str | None = None
    profile: str | None = None

    @property
    def duration(self) -> float:
        return self.finished - self.started

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration"] = round(self.duration, 3)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        return cls(
            started=float(d["started"]),
            finished=float(d["finished"]),
            status=str(d["status"]),
            message=str(d.get("message", "")),
            phases={str(k): float(v) for k, v in (d.get("phases") or {}).items()},
            phase=d.get("phase"),
            profile=d.get("profile"),
        )


def grade(
    phases: dict[str, float], thresholds: dict[str, float], profile: str | None = None
) -> tuple[str, str | None, str]:
    """(status, slow phase, message) of a run that completed every phase.

    WARNING when a phase took longer than its threshold (``thresholds`` maps a phase name,
    or ``total`` for the whole run, to seconds).
    """
    slow = [
        (name, took, thresholds[name])
        for name, took in {**phases, "total": sum(phases.values())}.items()
        if name in thresholds and took > thresholds[name]
    ]
    where = f" (profile {profile})" if profile else ""
    if slow:
        name, took, limit = slow[0]
        details = ", ".join(f"{n} took {t:.1f}s > {lim:g}s" for n, t, lim in slow)
        return WARNING, name, f"notebook ran but slowly{where}: {details}"
    total = sum(phases.values())
    return OK, None, f"notebook ran code successfully in {total:.1f}s{where}"


class ResultStore:
    """The last ``max_runs`` results, persisted as JSON in ``path`` (None: memory only)."""

    def __init__(self, path: str | os.PathLike | None, max_runs: int = 48) -> None:
        self.path = Path(path) if path else None
        self.max_runs = max(1, max_runs)
        self.runs: deque[RunResult] = deque(maxlen=self.max_runs)
        #: runs per status since the history file was created (monotonic: Prometheus counters)
        self.counts: Counter[str] = Counter()
        self.load()

    def load(self) -> None:
        if not self.path or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            runs = [RunResult.from_dict(r) for r in data.get("runs", [])]
            counts = {str(k): int(v) for k, v in (data.get("counts") or {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            # a damaged history must not stop the probe; keep the file for inspection
            log.error("ignoring unreadable status history %s: %s", self.path, e)
            return
        self.runs.extend(runs[-self.max_runs :])
        self.counts.update(counts)

    def save(self) -> None:
        if not self.path:
            return
        data = {"runs": [r.to_dict() for r in self.runs], "counts": dict(self.counts)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # write-and-rename: a crash mid-write never leaves a truncated history
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".status-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add(self, result: RunResult) -> None:
        self.runs.append(result)
        self.counts[result.status] += 1
        try:
            self.save()
        except OSError as e:
            log.error("could not save status history to %s: %s", self.path, e)

    @property
    def last(self) -> RunResult | None:
        return self.runs[-1] if self.runs else None

    def current(self, interval: float, now: float | None = None) -> dict[str, Any]:
        """The status as served in ``status.json``.

        ``code``, ``msg`` and ``time`` are the keys the older EGI probe reads. The status is
        UNKNOWN with no run yet, and when the last run is older than twice ``interval``: a
        probe that stopped running must not keep reporting OK.
        """
        now = time.time() if now is None else now
        last = self.last
        if last is None:
            return {
                "code": UNKNOWN,
                "exit_code": EXIT_CODES[UNKNOWN],
                "msg": "no probe run yet",
                "time": None,
                "age": None,
                "phases": {},
                "phase": None,
            }
        age = max(0.0, now - last.finished)
        status, msg = last.status, last.message
        if age > 2 * interval:
            status = UNKNOWN
            msg = (
                f"stale result: last probe run {age:.0f}s ago (more than 2 x interval "
                f"{interval:g}s); it said {last.status}: {last.message}"
            )
        return {
            "code": status,
            "exit_code": EXIT_CODES[status],
            "msg": msg,
            "time": last.finished,
            "age": round(age, 3),
            "duration": round(last.duration, 3),
            "phases": {k: round(v, 3) for k, v in last.phases.items()},
            "phase": last.phase,
            "profile": last.profile,
            "interval": interval,
        }
