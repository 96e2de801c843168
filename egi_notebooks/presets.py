"""Configuration presets for identity providers other than EGI Check-in.

Call one from ``jupyterhub_config.py`` (z2jh: ``hub.extraConfig``) before your own settings,
which then win::

    from egi_notebooks.presets import eosc_aai
    eosc_aai(c)
    c.EGICheckinAuthenticator.client_id = "..."
    c.EGICheckinAuthenticator.allowed_vos = {"gp-0190..."}

A preset only sets traits that an operator could set by hand; ``eosc_aai_settings`` lists them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "EOSC_AAI_ISSUER",
    "EOSC_NAMESPACE",
    "PERSONAL_PROJECT_PREFIX",
    "eosc_aai",
    "eosc_aai_settings",
]

#: The EOSC EU Node AAI (production).
EOSC_AAI_ISSUER = "https://proxy.aai.open-science-cloud.ec.europa.eu"
#: The entitlement namespace of the EOSC EU Node AAI.
EOSC_NAMESPACE = "urn:geant:eosc-federation.eu"
#: EOSC EU Node personal projects: one per user, ``pp-<uuid>``; group projects are ``gp-<uuid>``.
PERSONAL_PROJECT_PREFIX = "pp-"
# EOSC releases the projects in ``entitlements``, as AARC-G069 names the claim
EOSC_SCOPE = ["openid", "profile", "email", "offline_access", "entitlements", "voperson_id"]


def eosc_aai_settings(
    issuer: str = EOSC_AAI_ISSUER,
    namespace: str = EOSC_NAMESPACE,
    personal_project_prefix: str = PERSONAL_PROJECT_PREFIX,
) -> dict[str, Any]:
    """The ``EGICheckinAuthenticator`` traits the EOSC AAI preset sets, by name.

    - ``oidc_issuer``: ``issuer`` (staging: ``https://proxy.staging.eosc-federation.eu``);
    - the ``entitlements`` claim and scope (EOSC has no ``eduperson_entitlement``);
    - trust: entitlements of ``namespace`` count, with the issuer's host as authority or
      without any (EOSC leaves it out);
    - the personal project (``pp-...``) is the primary VO, the one accounting and the
      spawner's ``egi.eu/primary-vo`` annotation use; without one, the first project.
    """
    host = (urlsplit(issuer).hostname or "").lower()
    return {
        "oidc_issuer": issuer.rstrip("/"),
        "login_service": "EOSC AAI",
        "scope": list(EOSC_SCOPE),
        "entitlements_claims": ["entitlements"],
        "trusted_entitlement_namespaces": {namespace},
        "trusted_entitlement_authorities": {host},
        "entitlements_without_authority": True,
        "vo_priority": [f"{personal_project_prefix}*"],
    }


def eosc_aai(c: Any, **kwargs: Any) -> dict[str, Any]:
    """Configure ``EGICheckinAuthenticator`` for the EOSC EU Node AAI on config object ``c``.

    ``kwargs`` go to :func:`eosc_aai_settings`. Authorization stays yours: name the projects
    whose members may log in (``allowed_vos``) or allow everyone (``allow_all``). Returns the
    settings made.
    """
    settings = eosc_aai_settings(**kwargs)
    for name, value in settings.items():
        setattr(c.EGICheckinAuthenticator, name, value)
    return settings
