"""The demo accounts of the local EGI Check-in and a ready provider configuration, shared by
`egi-notebooks demo` and the test harness (both local providers read this document).

alice: member of vo.notebooks.egi.eu and vo.access.egi.eu; bob: vo.access.egi.eu only;
admin: manager of vo.notebooks.egi.eu; mallory: only vo.other.eu (no allowed VO).
Each password is the login name.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any

AUTHORITY = "aai.egi.eu"
CLIENT_ID = "hub"


def stable_sub(login: str) -> str:
    """A subject identifier that looks random but is the same for a login on every run."""
    return hashlib.sha256(f"egi-notebooks-demo:{login}".encode()).hexdigest()


def entitlement(vo: str, role: str = "member") -> str:
    return f"urn:mace:egi.eu:group:{vo}:role={role}#{AUTHORITY}"


DEMO_ENTITLEMENTS: dict[str, list[str]] = {
    "alice": [entitlement("vo.notebooks.egi.eu"), entitlement("vo.access.egi.eu")],
    "bob": [entitlement("vo.access.egi.eu")],
    "admin": [entitlement("vo.notebooks.egi.eu", "manager")],
    "mallory": [entitlement("vo.other.eu")],
}


# Check-in's claim for entitlements, and its successor (both may be released during the move)
ENTITLEMENT_CLAIMS = ("eduperson_entitlement",)


def demo_user(
    login: str, entitlements: list[str], entitlement_claims: Sequence[str] = ENTITLEMENT_CLAIMS
) -> dict[str, Any]:
    return {
        "password": login,
        "claims": {
            "sub": stable_sub(login),
            "voperson_id": f"{login}@egi.eu",
            "preferred_username": login,
            "name": login.capitalize(),
            "email": f"{login}@example.org",
            "email_verified": True,
            **{claim: list(entitlements) for claim in entitlement_claims},
        },
    }


def demo_users(entitlement_claims: Sequence[str] = ENTITLEMENT_CLAIMS) -> dict[str, dict[str, Any]]:
    """A fresh copy each call: callers may change it.

    ``entitlement_claims``: the claims that carry the entitlements (``eduperson_entitlement``,
    ``entitlements`` or both)."""
    return {
        login: demo_user(login, ents, entitlement_claims)
        for login, ents in DEMO_ENTITLEMENTS.items()
    }


def as_list(value: str | list[str] | tuple[str, ...]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def make_config(
    redirect_uris: str | list[str],
    post_logout_uris: str | list[str] | tuple[str, ...] = (),
    users: dict[str, dict[str, Any]] | None = None,
    client_id: str = CLIENT_ID,
    client_secret: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """A provider configuration document with one client; ``settings`` are top-level keys."""
    config: dict[str, Any] = {
        "admin_token": secrets.token_urlsafe(24),
        "clients": [
            {
                "client_id": client_id,
                "client_secret": client_secret or secrets.token_urlsafe(24),
                "redirect_uris": as_list(redirect_uris),
                "post_logout_redirect_uris": as_list(post_logout_uris),
            }
        ],
        "users": demo_users() if users is None else users,
    }
    config.update(settings)
    return config
