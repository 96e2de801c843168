"""VO-filtered profiles: ``profile_list`` entries may carry ``vos`` / ``entitlements``.

A profile without either is offered to everyone; otherwise to users matching any listed
pattern (``egi_notebooks.entitlements`` grammar). Membership comes from the auth_state the
authenticator stores: ``entitlements`` (raw URNs) and ``vos`` (VO names).

EGISpawner hands kubespawner a :class:`VOFilteredProfiles` as its ``profile_list``:
kubespawner accepts a callable there and calls it with the spawner both to render its own
spawn form and to apply the chosen profile, so both see only the profiles the user may use.

egi-notebooks-hub 1.0 profiles carry ``vo_claims`` instead: hub group names, which there were
the raw values of the groups claim (full entitlement URNs on Check-in). They keep working:
a full URN is read as an ``entitlements`` pattern (it then matches exactly that VO, group
path, role and authority, as the 1.0 group-name comparison did), anything else as a VO name
(``vos``). Each such profile is reported once per process with its replacement keys.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from egi_notebooks.entitlements import (
    Entitlement,
    EntitlementPattern,
    parse_entitlement,
    parse_entitlements,
    parse_pattern,
)

PATTERN_KEYS = ("vos", "entitlements")
LEGACY_KEY = "vo_claims"  # egi-notebooks-hub 1.0

log = logging.getLogger(__name__)
# (profile name, vo_claims) already reported: the profile list is read at every form render
# and spawn, the deprecation is said once per process.
_warned_legacy: set[tuple[str, tuple[str, ...]]] = set()


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


def _as_list(values: Any) -> list:
    if not values:
        return []
    return [values] if isinstance(values, str) else list(values)


def split_vo_claims(values: Any) -> dict[str, list[str]]:
    """1.0 ``vo_claims`` values by the key that means the same now: full entitlement URNs
    under ``entitlements``, everything else (VO names) under ``vos``."""
    split: dict[str, list[str]] = {"vos": [], "entitlements": []}
    for value in _as_list(values):
        urn = isinstance(value, str) and parse_entitlement(value.strip()) is not None
        split["entitlements" if urn else "vos"].append(value)
    return {key: found for key, found in split.items() if found}


def _profile_name(profile: Mapping[str, Any]) -> str:
    return str(profile.get("slug") or profile.get("display_name") or "")


def _warn_legacy(profile: Mapping[str, Any], split: dict[str, list[str]], logger: Any) -> None:
    name = _profile_name(profile)
    key = (name, tuple(str(v) for v in _as_list(profile.get(LEGACY_KEY))))
    if key in _warned_legacy:
        return
    _warned_legacy.add(key)
    replacement = ", ".join(f"{k}: {v!r}" for k, v in split.items())
    logger.warning(
        "profile_list entry %r: %r (egi-notebooks-hub 1.0) is deprecated, read as %s;"
        " rename the key",
        name,
        LEGACY_KEY,
        replacement or "no restriction",
    )


def profile_patterns(
    profile: Mapping[str, Any], logger: Any | None = None
) -> list[EntitlementPattern]:
    """The parsed ``vos`` + ``entitlements`` (+ 1.0 ``vo_claims``) of a profile; ValueError
    names the profile. ``logger`` gets the one-time deprecation warning for ``vo_claims``."""
    values_by_key = {key: _as_list(profile.get(key)) for key in PATTERN_KEYS}
    if profile.get(LEGACY_KEY):
        split = split_vo_claims(profile[LEGACY_KEY])
        _warn_legacy(profile, split, logger or log)
        for key, values in split.items():
            values_by_key[key] = [*values_by_key[key], *values]
    patterns = []
    for key, values in values_by_key.items():
        for value in values:
            try:
                patterns.append(parse_pattern(value))
            except ValueError as exc:
                source = (
                    f"{key} (from {LEGACY_KEY})" if value not in _as_list(profile.get(key)) else key
                )
                raise ValueError(
                    f"profile_list entry {_profile_name(profile)!r}, {source}: {exc}"
                ) from None
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


ConfiguredProfiles = list | dict | Callable[[Any], Any]


class VOFilteredProfiles:
    """A kubespawner ``profile_list`` callable: the operator's profiles a user may use.

    ``configured`` is what the operator set (a list, a dict by slug, or a callable taking
    the spawner, sync or async); ``membership_of(spawner)`` gives the user's membership.
    """

    def __init__(
        self,
        configured: ConfiguredProfiles,
        membership_of: Callable[[Any], Awaitable[Membership]],
    ) -> None:
        self.configured = configured
        self.membership_of = membership_of

    async def all_profiles(self, spawner: Any) -> list[dict]:
        """Every configured profile (unfiltered); a malformed pattern raises ValueError."""
        profiles = self.configured
        if isinstance(profiles, dict):
            # kubespawner's order for a dict: by key
            profiles = [profiles[key] for key in sorted(profiles)]
        elif callable(profiles):
            profiles = profiles(spawner)
            if inspect.isawaitable(profiles):
                profiles = await profiles
        profiles = list(profiles or [])
        for profile in profiles:
            # A malformed pattern is an operator error: say which. 1.0 vo_claims warn here.
            profile_patterns(profile, getattr(spawner, "log", None))
        return profiles

    async def __call__(self, spawner: Any) -> list[Mapping[str, Any]]:
        profiles = await self.all_profiles(spawner)
        return list(filter_profiles(profiles, await self.membership_of(spawner)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.configured!r})"
