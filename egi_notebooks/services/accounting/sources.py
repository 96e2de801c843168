"""Where the facts about a session come from: pod annotations, hub groups, user options.

The VO and the image come only from what the spawner recorded (its pod annotations, in the
server state) or the hub decided (the user's VO groups); the spawn request's user options are
written by the user and give only the flavour of a spawner that records none.

Separated from the collector so that deployments can override one rule (e.g. where the
primary VO lives) without touching the polling logic.
"""

from __future__ import annotations

import re

try:  # one source of truth: the spawner writes these annotations
    from egi_notebooks.spawner.annotations import FLAVOR as FLAVOR_ANNOTATION
    from egi_notebooks.spawner.annotations import IMAGE as IMAGE_ANNOTATION
    from egi_notebooks.spawner.annotations import PRIMARY_VO as PRIMARY_VO_ANNOTATION
except ImportError:  # the spawner (and kubespawner) is not installed
    PRIMARY_VO_ANNOTATION = "egi.eu/primary-vo"
    FLAVOR_ANNOTATION = "egi.eu/flavor"
    IMAGE_ANNOTATION = "egi.eu/image"

try:
    from egi_notebooks.services.status import PROBE_GROUP
except ImportError:  # pragma: no cover - the status service ships with the package
    PROBE_GROUP = "egi-notebooks-probe"

_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
_SUFFIX = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "m": 1e-3,
}


def parse_quantity(value: object) -> float | None:
    """A Kubernetes quantity (``"2"``, ``"500m"``, ``"4Gi"``, ``"512M"``, ``2.5``) as a number.

    Returns None for anything that is not a quantity (the caller logs and goes on).
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value)
    if not match or match.group(2) not in _SUFFIX:
        return None
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def first_str(*candidates: object) -> str | None:
    """The first candidate that is a non-empty string."""
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def annotations_of(server: dict) -> dict:
    """Pod annotations where the spawner exposes them in the server's state, if anywhere."""
    state = server.get("state") or {}
    annotations = state.get("annotations") if isinstance(state, dict) else None
    return annotations if isinstance(annotations, dict) else {}
