"""The demo users: kept in ``egi_notebooks.demo.accounts``, shared with the certified provider."""

from ..accounts import (
    AUTHORITY,
    CLIENT_ID,
    DEMO_ENTITLEMENTS,
    ENTITLEMENT_CLAIMS,
    as_list,
    demo_user,
    demo_users,
    entitlement,
    make_config,
)

__all__ = [
    "AUTHORITY",
    "CLIENT_ID",
    "DEMO_ENTITLEMENTS",
    "ENTITLEMENT_CLAIMS",
    "as_list",
    "demo_user",
    "demo_users",
    "entitlement",
    "make_config",
]
