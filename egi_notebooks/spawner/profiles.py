"""VO-filtered profiles: ``profile_list`` entries may carry ``vos`` / ``entitlements``.

A profile without either is offered to everyone; otherwise to users matching any listed
pattern (``egi_notebooks.entitlements`` grammar). Membership comes from the auth_state the
authenticator stores: ``entitlements`` (raw URNs) and ``vos`` (VO names).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from egi_notebooks.entitlements import (
    Entitlement,
    EntitlementPattern,
    parse_entitlements,
    parse_pattern,
)

PATTERN_KEYS = ("vos", "entitlements")


@dataclass(frozen=True)
class Membership:
    """What the spawner needs from auth_state (never the tokens)."""

    vos: frozenset[str] = frozenset()
    entitlements: tuple[Entitlement, ...] = ()
    primary_vo: str | None = None
    known: bool = field(default=False)  # False: no auth_state was available

    @classmethod
    def from_auth_state(cls, auth_state: Mapping[str, Any] | None) -> Membership:
        if not auth_state:
            return cls()
        vos = auth_state.get("vos") or []
        return cls(
            vos=frozenset(v for v in vos if isinstance(v, str)),
            entitlements=tuple(parse_entitlements(auth_state.get("entitlements") or [])),
            primary_vo=auth_state.get("primary_vo") or None,
            known=True,
        )

    def matching(self, pattern: EntitlementPattern) -> list[Entitlement]:
        return [e for e in self.entitlements if pattern.matches(e)]

    def matches(self, pattern: EntitlementPattern) -> bool:
        if self.matching(pattern):
            return True
        # A bare VO name also matches the authenticator's VO list (VOs it derived itself).
        plain = not pattern.groups and pattern.role is None and pattern.namespace is None
        return plain and pattern.vo in self.vos


def profile_patterns(profile: Mapping[str, Any]) -> list[EntitlementPattern]:
    """The parsed ``vos`` + ``entitlements`` of a profile; ValueError names the profile."""
    patterns = []
    for key in PATTERN_KEYS:
        values = profile.get(key) or []
        if isinstance(values, str):
            values = [values]
        for value in values:
            try:
                patterns.append(parse_pattern(value))
            except ValueError as exc:
                name = profile.get("slug") or profile.get("display_name")
                raise ValueError(f"profile_list entry {name!r}, {key}: {exc}") from None
    return patterns


def allowed(profile: Mapping[str, Any], membership: Membership) -> bool:
    patterns = profile_patterns(profile)
    return not patterns or any(membership.matches(p) for p in patterns)


def filter_profiles(
    profiles: Iterable[Mapping[str, Any]], membership: Membership
) -> list[Mapping[str, Any]]:
    return [p for p in profiles if allowed(p, membership)]


def requirement(profile: Mapping[str, Any]) -> str:
    """Human wording of what a profile requires, for the refusal message."""
    return ", ".join(p.source for p in profile_patterns(profile))
