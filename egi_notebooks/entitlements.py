"""AARC-G002 entitlements and the pattern grammar used across egi-notebooks.

An entitlement as EGI Check-in and EOSC AAI release it::

    urn:mace:egi.eu:group:vo.example.org:sub:group:role=member#aai.egi.eu
    \\_____________/       \\____________/ \\_______/ \\_________/ \\_________/
      namespace               VO        group path   role        authority

A *pattern* (``allowed_entitlements``, ``admin_entitlements``, spawner ``vo_volumes``,
profile ``entitlements``) is either a full entitlement URN or the short form
``<vo>[:<group>...][:role=<role>]``. A pattern matches an entitlement when the VO and the
group path are equal and, when the pattern names a role (or an authority, for full URNs),
that too is equal. A pattern without a role matches any role; the short form matches any
namespace and authority.

This module is the only place that knows the grammar: the authenticator, the spawner and
accounting all import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = [
    "Entitlement",
    "EntitlementPattern",
    "parse_entitlement",
    "parse_pattern",
    "parse_entitlements",
    "entitlements_of",
    "vos_of",
    "matches_any",
    "choose_primary_vo",
]

# Long enough for any real entitlement; longer strings are junk and are skipped.
MAX_ENTITLEMENT_LENGTH = 1024
# Far more than any real user has (tens); the rest of a longer claim value is ignored.
MAX_ENTITLEMENTS = 20_000
_GROUP_MARKER = ":group:"


@dataclass(frozen=True)
class Entitlement:
    """One parsed entitlement."""

    namespace: str
    vo: str
    groups: tuple[str, ...] = ()
    role: str | None = None
    authority: str | None = None

    @property
    def group_path(self) -> str:
        """``vo:group:subgroup`` (no role), handy for display."""
        return ":".join((self.vo, *self.groups))

    @property
    def urn(self) -> str:
        """The canonical URN (what auth_state stores and the spawner re-parses)."""
        role = f":role={self.role}" if self.role else ""
        authority = f"#{self.authority}" if self.authority else ""
        return f"{self.namespace}:group:{self.group_path}{role}{authority}"


@dataclass(frozen=True)
class EntitlementPattern:
    """A parsed pattern; see the module docstring for the grammar."""

    vo: str
    groups: tuple[str, ...] = ()
    role: str | None = None
    namespace: str | None = None
    authority: str | None = None
    source: str = ""

    def matches(self, entitlement: Entitlement) -> bool:
        if entitlement.vo != self.vo or entitlement.groups != self.groups:
            return False
        if self.role is not None and entitlement.role != self.role:
            return False
        if self.namespace is not None and entitlement.namespace != self.namespace:
            return False
        return self.authority is None or entitlement.authority == self.authority


def _split_path(path: str) -> tuple[tuple[str, ...], str | None]:
    """Split ``vo:group:...:role=r`` into its components and the role."""
    parts = path.split(":")
    role = None
    if parts and parts[-1].startswith("role="):
        role = unquote(parts.pop()[len("role=") :]) or None
    return tuple(unquote(p) for p in parts), role


def parse_entitlement(value: object) -> Entitlement | None:
    """Parse one entitlement URN; ``None`` for anything that is not one.

    Never raises: claims come from the identity provider and may be anything.
    """
    if not isinstance(value, str) or len(value) > MAX_ENTITLEMENT_LENGTH:
        return None
    head, sep, tail = value.partition(_GROUP_MARKER)
    if not sep or not head.lower().startswith("urn:") or not tail:
        return None
    path, _, authority = tail.partition("#")
    components, role = _split_path(path)
    if not components or any(not c for c in components):
        return None
    return Entitlement(
        namespace=head.lower(),
        vo=components[0],
        groups=components[1:],
        role=role,
        authority=authority or None,
    )


def parse_pattern(pattern: str) -> EntitlementPattern:
    """Parse a pattern (full URN or short form); raise ``ValueError`` when malformed."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError(f"empty entitlement pattern: {pattern!r}")
    pattern = pattern.strip()
    if pattern.lower().startswith("urn:"):
        parsed = parse_entitlement(pattern)
        if parsed is None:
            raise ValueError(
                f"entitlement pattern {pattern!r} is a URN without ':group:<vo>'"
                " (expected urn:<namespace>:group:<vo>[:<group>...][:role=<role>][#<authority>])"
            )
        return EntitlementPattern(
            vo=parsed.vo,
            groups=parsed.groups,
            role=parsed.role,
            namespace=parsed.namespace,
            authority=parsed.authority,
            source=pattern,
        )
    if "#" in pattern:
        raise ValueError(f"short entitlement pattern {pattern!r} cannot name an authority")
    components, role = _split_path(pattern)
    if not components or any(not c for c in components) or any("=" in c for c in components):
        raise ValueError(
            f"malformed entitlement pattern {pattern!r} (expected <vo>[:<group>...][:role=<role>])"
        )
    return EntitlementPattern(vo=components[0], groups=components[1:], role=role, source=pattern)


def parse_entitlements(values: object, limit: int = MAX_ENTITLEMENTS) -> list[Entitlement]:
    """Parse a claim value (a list, or a single string) into entitlements, skipping junk.

    At most ``limit`` values are looked at: a provider's answer may be anything.
    """
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list | tuple):
        return []
    parsed = (parse_entitlement(v) for v in values[:limit])
    return [e for e in parsed if e is not None]


def entitlements_of(
    claims: Mapping[str, object], names: Iterable[str], limit: int = MAX_ENTITLEMENTS
) -> list[Entitlement]:
    """The entitlements in the claims ``names`` together: in order, without duplicates.

    A claim that is absent or not a list (or string) contributes nothing.
    """
    found: dict[Entitlement, None] = {}
    for name in names:
        for entitlement in parse_entitlements(claims.get(name), limit - len(found)):
            found.setdefault(entitlement, None)
        if len(found) >= limit:
            break
    return list(found)


def vos_of(entitlements: Iterable[Entitlement]) -> list[str]:
    """The VOs in provider order, without duplicates."""
    return list(dict.fromkeys(e.vo for e in entitlements))


def matches_any(
    patterns: Iterable[EntitlementPattern], entitlements: Iterable[Entitlement]
) -> bool:
    """True when any pattern matches any entitlement."""
    entitlements = list(entitlements)
    return any(p.matches(e) for p in patterns for e in entitlements)


def choose_primary_vo(vos: list[str], priority: Iterable[str] = ()) -> str | None:
    """The first VO of ``priority`` the user has, else the first in provider order."""
    have = set(vos)
    for vo in priority:
        if vo in have:
            return vo
    return vos[0] if vos else None
