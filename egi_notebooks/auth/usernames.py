"""Which claim values may name a hub user: one rule for the authenticator at login and for
``egi-notebooks migrate-users``, which renames users to what the authenticator will call them."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# Check-in's voperson_id: ``<opaque lowercase id>@<scope>`` (hex ids, the demo's alice@egi.eu)
VOPERSON_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}@[a-z0-9][a-z0-9.-]{0,252}$"
# any other claim (preferred_username in the 1.0-compatible mode): ASCII, case kept (the hub
# lowercases it, as egi-notebooks-hub 1.0 did)
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,254}$"


def default_pattern(claim: str) -> str:
    """The default ``username_claim_pattern`` for a username claim."""
    return VOPERSON_ID_PATTERN if claim == "voperson_id" else USERNAME_PATTERN


def usable_username(value: Any, pattern: str) -> bool:
    """``value`` as the provider released it names a user: a string in Unicode NFKC normal
    form, without surrounding spaces, matching ``pattern``. Never repaired: a value that
    normalisation would change names someone else after JupyterHub's lowercasing
    (U+212A KELVIN SIGN -> ``K`` -> ``k``)."""
    return (
        isinstance(value, str)
        and unicodedata.normalize("NFKC", value) == value
        and value.strip() == value
        and re.fullmatch(pattern, value) is not None
    )
