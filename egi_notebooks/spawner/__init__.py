"""EGISpawner: kubespawner for EGI Notebooks (storage, VO volumes, token Secret, profiles).

``c.JupyterHub.spawner_class = "egi-kubespawner"`` selects it. For the authenticator:
:func:`update_user_token_secrets` writes refreshed tokens to the pods of a user.
"""

from . import annotations
from .k8s_calls import KubernetesTrouble
from .spawner import EGISpawner, ProfileRefused
from .token_secret import update_user_token_secrets

__all__ = [
    "EGISpawner",
    "KubernetesTrouble",
    "ProfileRefused",
    "annotations",
    "update_user_token_secrets",
]
