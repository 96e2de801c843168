"""The backup status file: what every run leaves for the status service and the Nagios check.

One JSON object, rewritten atomically at the end of each run (a reader never sees half a
file)::

    {"version": 1, "updated": <unix time>, "repository": "<location, no credentials>",
     "last_run": {"started": t, "finished": t, "ok": n, "failed": n, "failures": {...}},
     "volumes": {"<claim>": {"claim", "user", "vo", "kind", "last_success", "last_snapshot",
                             "last_attempt", "last_error", "last_error_kind",
                             "consecutive_failures", "bytes_added"}},
     "check": {"last": t, "ok": bool, "message": str}}
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

OK, WARNING, CRITICAL, UNKNOWN = "OK", "WARNING", "CRITICAL", "UNKNOWN"
EXIT_CODES = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}
DAY = 86400.0


def load(path: str) -> dict[str, Any]:
    """The status file's content; an empty status when there is none yet."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {"version": 1, "volumes": {}}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    data.setdefault("volumes", {})
    return data


def save(path: str, data: dict[str, Any]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".backup-status-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True, ensure_ascii=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def evaluate(
    data: dict[str, Any],
    warning_days: float = 1,
    critical_days: float = 3,
    now: float | None = None,
) -> tuple[str, str, list[dict[str, Any]]]:
    """(status, one-line message, per-volume rows) for the Nagios check and the status
    service: WARNING when a volume's last successful backup is older than ``warning_days``,
    CRITICAL when older than ``critical_days`` or never made; UNKNOWN when no run has been
    recorded at all."""
    now = time.time() if now is None else now
    volumes = data.get("volumes") or {}
    if not data.get("last_run"):
        return UNKNOWN, "no backup run recorded yet", []
    rows, worst = [], OK
    order = [OK, WARNING, CRITICAL]
    for claim, v in sorted(volumes.items()):
        last = v.get("last_success")
        age = None if last is None else max(0.0, now - float(last))
        if age is None or age > critical_days * DAY:
            state = CRITICAL
        elif age > warning_days * DAY:
            state = WARNING
        else:
            state = OK
        worst = max(worst, state, key=order.index)
        rows.append({**v, "claim": claim, "age": age, "state": state})
    failed = [r for r in rows if r.get("last_error")]
    stale = [r for r in rows if r["state"] != OK]
    if not rows:
        message = "no volumes backed up"
    elif stale:
        names = ", ".join(_who(r) for r in stale[:5]) + (" ..." if len(stale) > 5 else "")
        message = f"{len(stale)} of {len(rows)} volumes without a recent backup: {names}"
    else:
        message = f"{len(rows)} volumes backed up within {warning_days:g} day(s)"
    if failed:
        message += f"; {len(failed)} failed in the last run"
    check = data.get("check") or {}
    if check and not check.get("ok", True):
        worst = max(worst, WARNING, key=order.index)
        message += f"; restic check failed: {check.get('message', '')}"
    return worst, message, rows


def _who(row: dict[str, Any]) -> str:
    return str(row.get("user") or row["claim"])
