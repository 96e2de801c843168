"""EGISpawner: kubespawner for EGI Notebooks (storage, VO volumes, token Secret, profiles).

``c.JupyterHub.spawner_class = "egi-kubespawner"`` selects it. For the authenticator:
:func:`update_user_token_secrets` writes refreshed tokens to the pods of a user.

The names below are imported on first use, so that ``egi-notebooks migrate-claims`` (which
imports :mod:`.migrate` from this package) does not import kubespawner and JupyterHub.
"""

# (no `from __future__ import annotations` here: it would shadow the .annotations module)
import importlib
from typing import Any

from . import annotations

_LAZY = {
    "EGISpawner": ".spawner",
    "ProfileRefused": ".spawner",
    "KubernetesTrouble": ".k8s_calls",
    "update_user_token_secrets": ".spawner",
}

__all__ = [
    "EGISpawner",
    "KubernetesTrouble",
    "ProfileRefused",
    "annotations",
    "update_user_token_secrets",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
