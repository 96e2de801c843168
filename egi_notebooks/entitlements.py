"""AARC-G002 entitlements and the pattern grammar used across egi-notebooks.

An entitlement as EGI Check-in and EOSC AAI release it::

    urn:mace:egi.eu:group:vo.example.org:sub:group:role=member#aai.egi.eu
    \\_____________/       \\____________/ \\_______/ \\_________/ \\_________/
      namespace               VO        group path   role        authority

A *pattern* (``allowed_entitlements``, ``admin_entitlements``, spawner ``vo_volumes``,
profile ``entitlements``) is either a full entitlement URN or the short form
``<vo>[:<group>...][:role=<role>]``. A pattern matches an entitlement when the VO and the
group path are equal and, when the pattern names a role (or an authority, for full URNs),
that too is equal. A pattern without a role matches any role.

A VO name means nothing without the namespace and authority that vouch for it: anyone can
mint ``urn:mace:evil.org:group:vo.notebooks.egi.eu:role=manager#evil.org``. An
:class:`EntitlementTrust` (the namespaces and authorities of the identity provider) says
which entitlements count. Given one, :func:`matches_any` lets the short form match trusted
entitlements only, and a full URN without an authority only entitlements whose authority is
trusted; a full URN that names its authority stays exact (the operator named it). The
authenticator keeps only trusted entitlements in auth_state, so the VOs, the hub groups and
everything the spawner and accounting read come from trusted entitlements alone.

This module is the only place that knows the grammar: the authenticator, the spawner and
accounting all import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = [
    "Entitlement",
    "EntitlementPattern",
    "EntitlementTrust",
    "IssuerDefaults",
    "issuer_defaults",
    "count_entitlement_values",
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

    def matches(self, entitlement: Entitlement, trust: EntitlementTrust | None = None) -> bool:
        """Grammar match; with ``trust``, what the pattern leaves open must be trusted."""
        if entitlement.vo != self.vo or entitlement.groups != self.groups:
            return False
        if self.role is not None and entitlement.role != self.role:
            return False
        if self.namespace is not None and entitlement.namespace != self.namespace:
            return False
        if self.authority is not None:
            return _same_authority(entitlement.authority, self.authority)
        if trust is None:
            return True
        if self.namespace is None:
            return trust.trusts(entitlement)
        return trust.authority_ok(entitlement)


def _same_authority(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower() == b.lower()


@dataclass(frozen=True)
class EntitlementTrust:
    """The namespaces and authorities whose entitlements count (compared case-insensitively).

    ``without_authority``: whether an entitlement without ``#<authority>`` counts (AARC-G069
    made the authority optional; Check-in's ``eduperson_entitlement`` always carries one).
    """

    namespaces: frozenset[str]
    authorities: frozenset[str]
    without_authority: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "namespaces", frozenset(n.lower() for n in self.namespaces))
        object.__setattr__(self, "authorities", frozenset(a.lower() for a in self.authorities))

    def authority_ok(self, entitlement: Entitlement) -> bool:
        if entitlement.authority is None:
            return self.without_authority
        return entitlement.authority.lower() in self.authorities

    def trusts(self, entitlement: Entitlement) -> bool:
        return entitlement.namespace in self.namespaces and self.authority_ok(entitlement)

    def filter(self, entitlements: Iterable[Entitlement]) -> list[Entitlement]:
        return [e for e in entitlements if self.trusts(e)]


@dataclass(frozen=True)
class IssuerDefaults:
    """Entitlement trust defaults of one identity provider."""

    namespaces: frozenset[str]
    authorities: frozenset[str]
    without_authority: bool


CHECKIN_NAMESPACE = "urn:mace:egi.eu"
CHECKIN_AUTHORITY = "aai.egi.eu"
# issuer host -> (namespace, authority-less entitlements count); the host itself is a trusted
# authority too. EOSC EU Node (EOSC Federation) releases its group entitlements in the
# ``entitlements`` claim without authority; the EOSC Core Infrastructure Proxy (formerly EOSC
# Portal AAI) drops it in that claim as AARC-G069 allows.
_EOSC_ISSUERS = {
    "proxy.aai.open-science-cloud.ec.europa.eu": "urn:geant:eosc-federation.eu",
    "proxy.staging.eosc-federation.eu": "urn:geant:eosc-federation.eu",
    "proxy.testing.eosc-federation.eu": "urn:geant:eosc-federation.eu",
    "aai.eosc-portal.eu": "urn:geant:eosc-portal.eu",
    "aai-demo.eosc-portal.eu": "urn:geant:eosc-portal.eu",
}
_CHECKIN_TEST_HOSTS = ("aai-demo.egi.eu", "aai-dev.egi.eu")


def issuer_defaults(issuer: str) -> IssuerDefaults:
    """Trust defaults for ``issuer``: EOSC AAI's for its known hosts, else Check-in's.

    Any other issuer (a Keycloak realm, the local provider of the demo and the tests) gets
    Check-in's namespace and authority: EGI VOs are what the hub's configuration names.
    """
    host = (urlsplit(issuer).hostname or "").lower()
    if host in _EOSC_ISSUERS:
        return IssuerDefaults(frozenset({_EOSC_ISSUERS[host]}), frozenset({host}), True)
    authorities = {CHECKIN_AUTHORITY}
    if host in _CHECKIN_TEST_HOSTS:
        authorities.add(host)
    return IssuerDefaults(frozenset({CHECKIN_NAMESPACE}), frozenset(authorities), False)


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
    patterns: Iterable[EntitlementPattern],
    entitlements: Iterable[Entitlement],
    trust: EntitlementTrust | None = None,
) -> bool:
    """True when any pattern matches any entitlement (see :meth:`EntitlementPattern.matches`)."""
    entitlements = list(entitlements)
    return any(p.matches(e, trust) for p in patterns for e in entitlements)


def count_entitlement_values(claims: Mapping[str, object], names: Iterable[str]) -> int:
    """How many values the claims ``names`` hold together, without parsing any (cheap)."""
    total = 0
    for name in names:
        value = claims.get(name)
        if isinstance(value, str):
            total += 1
        elif isinstance(value, list | tuple):
            total += len(value)
    return total


def choose_primary_vo(vos: list[str], priority: Iterable[str] = ()) -> str | None:
    """The first VO of ``priority`` the user has, else the first in provider order.

    An entry ending in ``*`` stands for the VOs that start with what precedes it (the first
    of them in provider order): ``pp-*`` picks an EOSC EU Node personal project, whose name
    differs for every user.
    """
    have = set(vos)
    for vo in priority:
        if vo.endswith("*"):
            prefix = vo[:-1]
            match = next((v for v in vos if v.startswith(prefix)), None)
            if match is not None:
                return match
        elif vo in have:
            return vo
    return vos[0] if vos else None
