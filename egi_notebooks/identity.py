"""The provider identity a hub account is bound to: one contract for the authenticator, the
spawner and ``egi-notebooks migrate-users``, which never import each other.

A hub username is a claim value that can stop naming the same person (egi-notebooks-hub 1.0
named users after ``preferred_username``, which a Check-in user can change, so one user's
1.0 name could be another user's ``voperson_id``). An account is therefore bound to the
identity it was created or migrated with: ``"<claim>:<value>"`` of a claim that never changes
and is never reassigned (``sub`` by default). Users cannot change it: it is kept in the
account's encrypted auth_state (only the hub and holders of ``admin:auth_state`` write it) and
on the home claims the spawner creates (annotation
``egi_notebooks.spawner.annotations.OWNER_IDENTITY``; users have no Kubernetes API access).

auth_state keys:

- :data:`IDENTITY_KEY`: the identity string, written by the authenticator at every login and
  refresh and by ``migrate-users``; a login with another identity is refused.
- :data:`LEGACY_NAMES_KEY`: ``{"identity": <identity>, "names": [<1.0 usernames>]}``, written
  by ``migrate-users``: the home claims those names' 1.0 hub made, which record no owner
  identity, belong to that identity. The authenticator carries it over at each login.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

IDENTITY_KEY = "identity"
LEGACY_NAMES_KEY = "legacy_names"


def make_identity(claim: str, value: Any) -> str | None:
    """The identity string for ``value`` of ``claim``; None when there is no usable value."""
    if not isinstance(value, str) or not value:
        return None
    return f"{claim}:{value}"


def identity_of(auth_state: Any) -> str | None:
    """The identity recorded in ``auth_state``, or None."""
    value = auth_state.get(IDENTITY_KEY) if isinstance(auth_state, Mapping) else None
    return value if isinstance(value, str) and value else None


def bound_identity(stored: Any, claim: str, claims_key: str) -> str | None:
    """The identity the account with stored auth_state ``stored`` is bound to: the recorded
    one, else (accounts made before identities were recorded, egi-notebooks-hub 1.0's) the
    ``claim`` of the claims it last logged in with; None when the account never logged in
    through the provider (created by an admin, auth_state lost): its next login binds it."""
    recorded = identity_of(stored)
    if recorded is not None and recorded.startswith(f"{claim}:"):
        return recorded
    claims = stored.get(claims_key) if isinstance(stored, Mapping) else None
    derived = make_identity(claim, claims.get(claim)) if isinstance(claims, Mapping) else None
    # recorded under another claim and nothing to compare with: a mismatch, never a pass
    return derived or recorded


def legacy_names(auth_state: Any) -> list[str]:
    """The 1.0 usernames ``migrate-users`` recorded for the identity of ``auth_state``."""
    record = auth_state.get(LEGACY_NAMES_KEY) if isinstance(auth_state, Mapping) else None
    if not isinstance(record, Mapping) or record.get("identity") != identity_of(auth_state):
        return []
    names = record.get("names")
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n]


def legacy_record(identity: str, names: list[str]) -> dict[str, Any]:
    return {"identity": identity, "names": sorted(set(names))}


def carry_over(stored: Any, auth_state: dict[str, Any]) -> None:
    """Keep ``migrate-users``' record of ``stored`` in a new login's ``auth_state`` when it
    is about the identity that logged in."""
    record = stored.get(LEGACY_NAMES_KEY) if isinstance(stored, Mapping) else None
    if isinstance(record, Mapping) and record.get("identity") == identity_of(auth_state):
        auth_state[LEGACY_NAMES_KEY] = dict(record)
