"""Deterministic, collision-free Kubernetes names for users and servers.

The home claim must keep its name when the hub database is lost, so names derive from the
username alone. A username that already is a simple DNS label (lowercase letters, digits,
single hyphens, at most 40 characters) is used as is, so ``claim-alice`` stays readable and
equal to zero-to-jupyterhub's default. Anything else becomes a readable prefix, ``---`` and
16 hex digits of SHA-256 of the exact username. The two forms cannot collide: as-is names
never contain ``--``. kubespawner's own "safe" slugs use 8 hex digits; 16 keep collisions
out of reach (~1e-10 for a million users) for names that, once chosen, never change.
"""

from __future__ import annotations

import hashlib
import re

_SIMPLE = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
HASH_LENGTH = 16
PREFIX_LENGTH = 20
PAIR_PREFIX_LENGTH = 12
# The longest slugs (39 and 45 characters) leave room for prefixes such as "egi-token-"
# within the 63 characters of a DNS label.
MAX_SLUG_LENGTH = 2 * PAIR_PREFIX_LENGTH + 2 + 3 + HASH_LENGTH


def _digest(*parts: str) -> str:
    # \xff never occurs in UTF-8, so ("ab", "c") and ("a", "bc") hash differently.
    return hashlib.sha256(b"\xff".join(p.encode("utf-8") for p in parts)).hexdigest()[:HASH_LENGTH]


def _prefix(name: str, length: int = PREFIX_LENGTH) -> str:
    prefix = _NON_ALNUM.sub("-", name.lower()).strip("-")[:length].rstrip("-")
    if not prefix or not prefix[0].isalpha():
        prefix = ("u-" + prefix)[:length].rstrip("-")
    return prefix


def user_slug(username: str) -> str:
    """A DNS-label-safe slug unique to ``username`` (see the module docstring)."""
    if _SIMPLE.fullmatch(username) and "--" not in username:
        return username
    return f"{_prefix(username)}---{_digest(username)}"


def user_server_slug(username: str, servername: str) -> str:
    """Like :func:`user_slug` for a (user, named server) pair; the user slug when unnamed."""
    if not servername:
        return user_slug(username)
    user, server = _prefix(username, PAIR_PREFIX_LENGTH), _prefix(servername, PAIR_PREFIX_LENGTH)
    return f"{user}--{server}---{_digest(username, servername)}"


def is_dns_label(name: str) -> bool:
    """RFC 1123 label: what object names, volume names and label values here must be."""
    return bool(re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name))
