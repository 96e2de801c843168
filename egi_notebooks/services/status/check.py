"""``egi-notebooks check-status URL``: Nagios/ARGO plugin reading the status service.

Prints one line, ``STATUS - message | spawn=1.2s;300;600;0 ...``, and exits 0 (OK),
1 (WARNING), 2 (CRITICAL) or 3 (UNKNOWN). An unreachable service, an HTTP error, a body
that is not the expected JSON, and a stale result are all UNKNOWN: the plugin never
crashes and never reports OK for a probe that stopped running.

Deliberately light: imports neither JupyterHub nor tornado (Nagios runs it often).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import httpx

from ...cli import HelpFormatter
from .results import EXIT_CODES, UNKNOWN

DEFAULT_MAX_AGE_FACTOR = 2
#: Seconds after which a result is stale when the body names no usable ``interval``
#: (twice the status service's default interval of 3600 s); ``--default-max-age``.
DEFAULT_MAX_AGE = 2 * 3600.0


def status_url(url: str) -> str:
    """Accept the service's base URL or the ``status.json`` URL itself."""
    if url.rstrip("/").endswith("status.json"):
        return url
    return url.rstrip("/") + "/status.json"


def _clean(text: str) -> str:
    # one line; '|' would start the performance data
    return " ".join(str(text).split()).replace("|", "/")


def perfdata(status: dict[str, Any]) -> str:
    phases = status.get("phases") or {}
    warn = status.get("thresholds") or {}
    crit = status.get("timeouts") or {}
    items = []
    for name, took in phases.items():
        label = name if name.replace("_", "").isalnum() else f"'{name}'"
        phase = name.rsplit(":", 1)[-1]
        items.append(
            f"{label}={float(took):.3f}s;{_num(warn.get(phase))};{_num(crit.get(phase))};0;"
        )
    if status.get("duration") is not None:
        items.append(f"total={float(status['duration']):.3f}s;{_num(warn.get('total'))};;0;")
    if status.get("age") is not None:
        items.append(f"age={float(status['age']):.0f}s;;;0;")
    return " ".join(items)


def _num(value: Any) -> str:
    return "" if value is None else f"{float(value):g}"


def _interval(body: dict[str, Any]) -> float | None:
    try:
        interval = float(body["interval"])
    except (KeyError, TypeError, ValueError):
        return None
    return interval if interval > 0 else None


def evaluate(
    body: Any,
    max_age: float | None = None,
    now: float | None = None,
    default_max_age: float = DEFAULT_MAX_AGE,
) -> tuple[int, str]:
    """(exit code, output line) for a decoded ``status.json`` body.

    A result is stale after ``max_age`` seconds, else after twice the body's ``interval``,
    else after ``default_max_age``: a verdict that cannot be dated is never trusted.
    """
    if not isinstance(body, dict) or "code" not in body or "msg" not in body:
        return EXIT_CODES[UNKNOWN], "UNKNOWN - status service answered without code/msg"
    code = str(body["code"]).upper()
    if code not in EXIT_CODES:
        return EXIT_CODES[UNKNOWN], f"UNKNOWN - unexpected status {_clean(code)[:40]!r}"
    message = _clean(body["msg"])
    # the service marks stale results itself; check again here in case the service
    # is an older one, or its clock/scheduler is stuck
    finished = body.get("time")
    if code != UNKNOWN and finished is None:
        return EXIT_CODES[UNKNOWN], f"UNKNOWN - status service sent no time; it said {message}"
    if code != UNKNOWN and finished is not None:
        try:
            age = (time.time() if now is None else now) - float(finished)
        except (TypeError, ValueError):
            return EXIT_CODES[UNKNOWN], "UNKNOWN - status service sent an invalid time"
        if max_age is None:
            interval = _interval(body)
            max_age = DEFAULT_MAX_AGE_FACTOR * interval if interval else default_max_age
        if age > max_age:
            code = UNKNOWN
            message = f"stale result: last probe run {age:.0f}s ago; it said {message}"
    line = f"{code} - {message}"
    try:
        perf = perfdata(body)
    except (TypeError, ValueError, AttributeError):
        perf = ""
    if perf:
        line += f" | {perf}"
    return EXIT_CODES[code], line


def check(
    url: str,
    timeout: float = 10,
    max_age: float | None = None,
    default_max_age: float = DEFAULT_MAX_AGE,
) -> tuple[int, str]:
    target = status_url(url)

    async def fetch() -> httpx.Response:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:
            return await client.get(target, headers={"Accept": "application/json"})

    try:
        # httpx timeouts are per operation; wait_for bounds the whole exchange
        response = asyncio.run(asyncio.wait_for(fetch(), timeout))
    except TimeoutError:
        return EXIT_CODES[UNKNOWN], f"UNKNOWN - status service did not answer in {timeout:g}s"
    except httpx.HTTPError as e:
        return EXIT_CODES[UNKNOWN], f"UNKNOWN - status service unreachable: {_clean(repr(e))}"
    if response.status_code != 200:
        return (
            EXIT_CODES[UNKNOWN],
            f"UNKNOWN - status service answered HTTP {response.status_code}",
        )
    try:
        body = response.json()
    except ValueError:
        return EXIT_CODES[UNKNOWN], "UNKNOWN - status service answered with invalid JSON"
    return evaluate(body, max_age=max_age, default_max_age=default_max_age)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="egi-notebooks check-status",
        formatter_class=HelpFormatter,
        description="Nagios/ARGO plugin: read the EGI Notebooks status service.",
    )
    parser.add_argument(
        "url", help="URL of the status service (…/services/status/) or of its status.json"
    )
    parser.add_argument(
        "-t",
        "--timeout",
        type=float,
        default=10,
        help="seconds before giving up on the service (default 10)",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=None,
        help="seconds after which a result is stale (default: 2 x the service's interval)",
    )
    parser.add_argument(
        "--default-max-age",
        type=float,
        default=DEFAULT_MAX_AGE,
        help="seconds after which a result is stale when the service "
        f"does not send its interval (default {DEFAULT_MAX_AGE:g})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        code, line = check(
            args.url,
            timeout=args.timeout,
            max_age=args.max_age,
            default_max_age=args.default_max_age,
        )
    except Exception as e:  # a plugin that crashes reports nothing useful to Nagios
        code, line = EXIT_CODES[UNKNOWN], f"UNKNOWN - check-status failed: {_clean(repr(e))}"
    print(line)
    return code
