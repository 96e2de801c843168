"""Home claim (find, adopt, create) and VO shared volumes.

Finding the home claim never lists the namespace in the steady state: the claim name is
kept in the spawner state, and without state (first spawn, or the hub database was lost)
it is derived from the username (:mod:`.names`) and read by name. Claims made before
EGISpawner are adopted, cheapest first:

1. the deterministic name (``pvc_name_template``, default ``claim-{user_slug}``);
2. ``legacy_claim_name_templates``: zero-to-jupyterhub's ``claim-{username}`` in both
   kubespawner slug schemes, read by name;
3. claims labelled ``egi.eu/user=<user slug>`` whose ``hub.jupyter.org/username``
   annotation is the user (one list call with a label selector). The older
   egi-notebooks-hub spawner gave claims random names and only that annotation, which no
   selector can match: :func:`label_legacy_claims` labels them once (one paginated list of
   ``component=singleuser-storage`` claims; operators run ``egi-notebooks migrate-claims
   [--dry-run]``), after which step 3 finds them;
4. only with ``legacy_claim_scan = True``: that list at every first spawn instead.

A claim found by name is mounted only when its metadata names the user (its
``hub.jupyter.org/username`` annotation is the username, or its ``egi.eu/user`` label is the
user slug, and neither names someone else): kubespawner's "escape" scheme makes one user's
legacy name another user's plain name (``alice.smith`` -> ``claim-alice-2esmith``, the as-is
name of user ``alice-2esmith``). Another user's claim found under a legacy name is skipped
(logged: claim and both users), and a new claim is created at the deterministic name; if the
deterministic name itself is another user's, or a claim found by name names nobody (it may
hold this user's files), the spawn is refused (:class:`ClaimOwnershipRefused`, a message for
the user; the log says which claim, which users and what to do). Claims EGISpawner and
kubespawner create carry the annotation (EGISpawner's the label too), so they pass.

Ownership is decided by the provider identity first (:class:`Claimant`,
:mod:`egi_notebooks.identity`): claims EGISpawner creates record the account's identity
(``egi.eu/owner``), and one recording another identity is never adopted. A claim recording
none (1.0's, z2jh's) is adopted by an account bound to an identity only when its username
annotation is a 1.0 name ``egi-notebooks migrate-users`` recorded for that identity (or with
``adopt_unbound_legacy_claims``): 1.0 usernames were changeable ``preferred_username`` values,
so the name on such a claim may have been another person's. Steps 3 and 4 also look under
those recorded names. Accounts without a known identity keep the username rules above.

Adopted names go into the spawner state, so later spawns make no storage calls at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from egi_notebooks.entitlements import EntitlementPattern, parse_pattern
from egi_notebooks.identity import IDENTITY_KEY

from . import annotations as ann
from .k8s_calls import KubernetesTrouble, RetryPolicy, call, gone_is_done, not_found_is_none
from .names import user_slug
from .profiles import Membership

LEGACY_SELECTOR = "component=singleuser-storage"


@dataclass(frozen=True)
class VOVolume:
    pattern: EntitlementPattern
    claim: str
    mount_path: str
    write_roles: frozenset[str] = frozenset()
    sub_path: str = ""


def parse_vo_volumes(config: Mapping[str, Any]) -> list[VOVolume]:
    """Parse the ``vo_volumes`` trait; ValueError names the offending entry."""
    volumes = []
    for key, spec in config.items():
        where = f"vo_volumes[{key!r}]"
        if not isinstance(spec, Mapping) or not spec.get("claim") or not spec.get("mount_path"):
            raise ValueError(f"{where} needs 'claim' and 'mount_path'")
        unknown = set(spec) - {"claim", "mount_path", "write_roles", "sub_path"}
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}")
        try:
            pattern = parse_pattern(key)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        volumes.append(
            VOVolume(
                pattern=pattern,
                claim=spec["claim"],
                mount_path=spec["mount_path"],
                write_roles=frozenset(spec.get("write_roles") or ()),
                sub_path=spec.get("sub_path") or "",
            )
        )
    return volumes


def vo_mounts(
    volumes: list[VOVolume], membership: Membership
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(volume, volumeMount) pairs for the VO volumes this user may see, re-evaluated per spawn.

    Read-only unless one of the user's entitlements matched by the pattern has a role in
    ``write_roles``. Two entries for the same claim and path merge (write wins).
    """
    chosen: dict[tuple[str, str], tuple[VOVolume, bool]] = {}
    for volume in volumes:
        if not membership.matches(volume.pattern):
            continue
        writable = any(e.role in volume.write_roles for e in membership.matching(volume.pattern))
        key = (volume.claim, volume.mount_path)
        if key in chosen:
            writable = writable or chosen[key][1]
        chosen[key] = (volume, writable)
    pairs = []
    for (claim, mount_path), (volume, writable) in chosen.items():
        name = f"vo-{user_slug(claim + '@' + mount_path)}"[:63].rstrip("-")
        pvc = {"claimName": claim, "readOnly": not writable}
        mount = {"name": name, "mountPath": mount_path, "readOnly": not writable}
        if volume.sub_path:
            mount["subPath"] = volume.sub_path
        pairs.append(({"name": name, "persistentVolumeClaim": pvc}, mount))
    return pairs


def _username_of(claim: Any) -> str | None:
    return ((claim.metadata.annotations or {}) if claim.metadata else {}).get(ann.USERNAME)


def _slug_label_of(claim: Any) -> str | None:
    return ((claim.metadata.labels or {}) if claim.metadata else {}).get(ann.USER_SLUG_LABEL)


class ClaimOwnershipRefused(RuntimeError):
    """A claim found under the user's name is not theirs; the message is for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.jupyterhub_message = message


def _owner(claim: Any, username: str) -> bool | None:
    """True if the claim's metadata names ``username`` (and nobody else), False if it
    names someone else, None if it names nobody."""
    annotated, labelled = _username_of(claim), _slug_label_of(claim)
    if annotated is None and labelled is None:
        return None
    return annotated in (None, username) and labelled in (None, user_slug(username))


def _owner_identity_of(claim: Any) -> str | None:
    return ((claim.metadata.annotations or {}) if claim.metadata else {}).get(ann.OWNER_IDENTITY)


@dataclass(frozen=True)
class Claimant:
    """Who a home claim is looked up for: the hub user and, when the authenticator records
    one (``egi_notebooks.identity``), the provider identity the account is bound to, with the
    egi-notebooks-hub 1.0 names ``migrate-users`` recorded for that identity."""

    username: str
    identity: str | None = None
    legacy_names: tuple[str, ...] = ()
    adopt_unbound: bool = False  # EGISpawner.adopt_unbound_legacy_claims

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys([self.username, *self.legacy_names]))


def _verdict(claim: Any, who: Claimant) -> str:
    """``mine``, ``other`` (another user's or identity's), ``unknown`` (names nobody) or
    ``unbound`` (names the user but records no owner identity, and no migration record or
    configuration vouches for it)."""
    recorded = _owner_identity_of(claim)
    if recorded is not None:
        # what the spawner wrote at creation; an account without a known identity (another
        # authenticator, a session from before identities were recorded) cannot match it
        return "mine" if who.identity is not None and recorded == who.identity else "other"
    named = [n for n in who.names if _owner(claim, n)]
    if not named:
        return "unknown" if _owner(claim, who.username) is None else "other"
    if who.identity is None or who.adopt_unbound:
        return "mine"  # no identity to bind: the username is all the hub knows
    # a claim made before owners were recorded (1.0's, z2jh's): its username annotation may
    # have named someone else then (1.0 names were changeable preferred_usernames)
    annotated = _username_of(claim)
    return "mine" if annotated is not None and annotated in who.legacy_names else "unbound"


def _names(claim: Any) -> str:
    owner = " (records an owner identity)" if _owner_identity_of(claim) is not None else ""
    return (
        f"annotation {ann.USERNAME}={_username_of(claim)!r}, "
        f"label {ann.USER_SLUG_LABEL}={_slug_label_of(claim)!r}{owner}"
    )


def _refuse_unowned(claim: Any, namespace: str, username: str, log: Any) -> None:
    name = claim.metadata.name
    log.error(
        "Refusing to mount claim %s/%s for user %r: it has neither the %s annotation nor "
        "the %s label, so its owner is unknown. If it is this user's, annotate it "
        "(kubectl -n %s annotate pvc %s %s=<username>) and the next spawn adopts it; "
        "`egi-notebooks migrate-claims` then labels it as well.",
        namespace,
        name,
        username,
        ann.USERNAME,
        ann.USER_SLUG_LABEL,
        namespace,
        name,
        ann.USERNAME,
    )
    raise ClaimOwnershipRefused(
        "Your home volume could not be attached: the storage claim found under your name "
        "does not say which user it belongs to. Please contact the operators of this service."
    )


def _refuse_taken(claim: Any, namespace: str, username: str, log: Any) -> None:
    log.error(
        "Refusing to spawn for user %r: claim %s/%s, this user's home claim name, is not "
        "known to be this user's (%s; this user's slug is %r; see the warning above), so no "
        "claim can be created there. Create one for the user under any name, labelled %s=%s "
        "and annotated %s=<username>; the next spawn adopts it.",
        username,
        namespace,
        claim.metadata.name,
        _names(claim),
        user_slug(username),
        ann.USER_SLUG_LABEL,
        user_slug(username),
        ann.USERNAME,
    )
    raise ClaimOwnershipRefused(
        "Your home volume could not be attached: the storage claim found under your name "
        "belongs to another user, or is not recorded as yours. Please contact the operators "
        "of this service."
    )


def _oldest(claims: list[Any]) -> str | None:
    if not claims:
        return None
    claims.sort(
        key=lambda c: (c.metadata.creation_timestamp is None, c.metadata.creation_timestamp)
    )
    return claims[0].metadata.name


async def find_home_claim(
    api: Any,
    namespace: str,
    username: str | Claimant,
    name: str,
    legacy_names: list[str],
    policy: RetryPolicy,
    log: Any,
    scan: bool = False,
    by_label: bool = True,
) -> str | None:
    """The name of the user's existing home claim, or None (see the module docstring).

    ``username``: the user, or a :class:`Claimant` with the identity the account is bound
    to. Raises :class:`ClaimOwnershipRefused` for a claim found by name that names nobody (it
    may hold this user's files), and when the claim at ``name`` is not the user's and no
    other claim of this user is found (``name`` cannot be created then).
    """
    who = username if isinstance(username, Claimant) else Claimant(username)
    user = who.username
    taken = None  # a claim at ``name`` that is not the user's
    for candidate in dict.fromkeys([name, *legacy_names]):
        found = await call(
            partial(api.read_namespaced_persistent_volume_claim, candidate, namespace),
            f"look up storage claim {candidate}",
            policy,
            log,
            accept=not_found_is_none,
        )
        if found is None:
            continue
        verdict = _verdict(found, who)
        if verdict == "mine":
            return candidate
        if verdict == "unknown":
            _refuse_unowned(found, namespace, user, log)
        _log_not_adopted(found, namespace, who, verdict, log)
        if candidate == name:
            taken = found
    adopted = await _find_labelled(api, namespace, who, policy, log, scan) if by_label else None
    if adopted is None and taken is not None:
        _refuse_taken(taken, namespace, user, log)
    return adopted


def _log_not_adopted(claim: Any, namespace: str, who: Claimant, verdict: str, log: Any) -> None:
    if verdict == "unbound":
        log.warning(
            "Not adopting claim %s/%s for user %r: it names this user (%s) but records no "
            "owner identity, and `egi-notebooks migrate-users` recorded no egi-notebooks-hub "
            "1.0 name of this account's identity for it: its username may have named another "
            "person then. If it is this user's, annotate it (kubectl -n %s annotate pvc %s "
            "%s=<the %s of the user's auth_state>).",
            namespace,
            claim.metadata.name,
            who.username,
            _names(claim),
            namespace,
            claim.metadata.name,
            ann.OWNER_IDENTITY,
            IDENTITY_KEY,
        )
        return
    log.warning(
        "Not adopting claim %s/%s for user %r: it belongs to another user or identity (%s); "
        "kubespawner's escaped legacy names coincide with other users' plain names.",
        namespace,
        claim.metadata.name,
        who.username,
        _names(claim),
    )


async def _find_labelled(
    api: Any, namespace: str, who: Claimant, policy: RetryPolicy, log: Any, scan: bool
) -> str | None:
    """Steps 3 and 4 of the module docstring (home claims only: per-server claims are not),
    under the username and the 1.0 names recorded for the account's identity."""
    mine: list[Any] = []
    for slug in dict.fromkeys(user_slug(n) for n in who.names):
        selector = f"{ann.USER_SLUG_LABEL}={slug}"
        labelled = await call(
            partial(
                api.list_namespaced_persistent_volume_claim, namespace, label_selector=selector
            ),
            "look up labelled storage claims",
            policy,
            log,
        )
        for found in labelled.items:
            verdict = _verdict(found, who)
            if verdict == "mine":
                mine.append(found)
            elif verdict == "unbound":
                _log_not_adopted(found, namespace, who, verdict, log)
    if found_name := _oldest(mine):
        return found_name
    if scan:
        log.warning("Scanning %s claims for %s (legacy_claim_scan)", namespace, who.username)
        every = await call(
            lambda: api.list_namespaced_persistent_volume_claim(
                namespace, label_selector=LEGACY_SELECTOR
            ),
            "scan storage claims",
            policy,
            log,
        )
        return _oldest(
            [c for c in every.items if _username_of(c) in who.names and _verdict(c, who) == "mine"]
        )
    return None


async def create_claim(api: Any, namespace: str, manifest: Any, policy: RetryPolicy, log: Any):
    """Create the claim; an existing one (409, e.g. a concurrent spawn) is fine."""
    await call(
        lambda: api.create_namespaced_persistent_volume_claim(namespace, manifest),
        f"create your storage claim {manifest.metadata.name}",
        policy,
        log,
        accept=lambda exc: True if exc.status == 409 else NotImplemented,
    )


@dataclass
class LabelReport:
    """What :func:`label_legacy_claims` did (or, dry, would do)."""

    labelled: list[tuple[str, str]] = field(default_factory=list)  # (claim, username)
    already: int = 0  # claims that carry the label already
    skipped: int = 0  # claims with no username annotation: nobody to give them to
    failed: list[tuple[str, str]] = field(default_factory=list)  # (claim, error)


async def label_legacy_claims(
    api: Any,
    namespace: str,
    page_size: int = 500,
    *,
    dry_run: bool = False,
    policy: RetryPolicy | None = None,
    log: Any = None,
) -> LabelReport:
    """One-time migration: label claims carrying only the username annotation.

    Adds ``egi.eu/user=<user slug>`` to every ``component=singleuser-storage`` claim with a
    ``hub.jupyter.org/username`` annotation and no such label, so that
    :func:`find_home_claim` finds it with a label selector. Pages through the claims; a
    claim that cannot be patched is reported and does not stop the others. With
    ``dry_run`` nothing is changed. Running it again labels nothing new.
    """
    policy = policy or RetryPolicy()
    log = log or logging.getLogger(__name__)
    report, token = LabelReport(), None
    while True:
        page = await call(
            partial(
                api.list_namespaced_persistent_volume_claim,
                namespace,
                label_selector=LEGACY_SELECTOR,
                limit=page_size,
                _continue=token,
            ),
            f"list storage claims in {namespace}",
            policy,
            log,
        )
        for claim in page.items:
            name, username = claim.metadata.name, _username_of(claim)
            if not username:
                report.skipped += 1
            elif ann.USER_SLUG_LABEL in (claim.metadata.labels or {}):
                report.already += 1
            elif dry_run:
                report.labelled.append((name, username))
            else:
                body = {"metadata": {"labels": {ann.USER_SLUG_LABEL: user_slug(username)}}}
                try:
                    await call(
                        partial(
                            api.patch_namespaced_persistent_volume_claim, name, namespace, body
                        ),
                        f"label storage claim {name}",
                        policy,
                        log,
                    )
                except KubernetesTrouble as exc:
                    report.failed.append((name, str(exc)))
                else:
                    report.labelled.append((name, username))
        token = page.metadata._continue if page.metadata else None
        if not token:
            return report


async def delete_claim(api: Any, namespace: str, name: str, policy: RetryPolicy, log: Any) -> None:
    await call(
        lambda: api.delete_namespaced_persistent_volume_claim(name, namespace),
        f"delete storage claim {name}",
        policy,
        log,
        accept=gone_is_done,
    )
