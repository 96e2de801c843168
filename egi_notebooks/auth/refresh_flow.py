"""What a refresh applies to the hub user itself (EGICheckinAuthenticator.refresh_tokens and
the background refresher): admin status, groups, the end of a browser session."""

from __future__ import annotations

from typing import Any

from jupyterhub import roles
from jupyterhub.utils import new_token


def apply_auth_model(user: Any, auth_model: dict[str, Any], manage_groups: bool) -> None:
    """Admin status and groups of ``auth_model`` on the hub user, as a login applies them.

    For refreshes the hub does not apply itself: background ones, and those that end the
    user's authorization (``refresh_user`` then returns False and the hub applies nothing).
    """
    if getattr(user, "orm_user", None) is None:
        return  # not a hub user (tests, a refresh outside the hub)
    admin = auth_model.get("admin")
    if admin is not None and admin != user.admin:
        user.admin = admin
        # the admin role, not the column, is what grants the permissions
        roles.assign_default_roles(user.db, entity=user)
        user.db.commit()
    groups = auth_model.get("groups")
    if manage_groups and groups is not None:
        user.sync_groups(groups)


def end_hub_login(user: Any) -> None:
    """Invalidate the user's hub login cookies: their next page asks for a login.

    Without it a browser session outlives a background refresh that ended the user's
    authorization by up to ``auth_refresh_age``: only then does the hub call refresh_user.
    """
    if getattr(user, "orm_user", None) is None:
        return
    user.cookie_id = new_token()  # login cookies carry the old one
    user.db.commit()
