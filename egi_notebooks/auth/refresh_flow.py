"""What a refresh applies to the hub user itself (EGICheckinAuthenticator.refresh_tokens and
the background refresher): admin status, groups, the end of a browser session and of every
hub token when the user is no longer authorized."""

from __future__ import annotations

from typing import Any

from jupyterhub import orm, roles
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


def end_hub_access(user: Any) -> int:
    """Revoke every hub credential of ``user``: their API tokens (those of their servers and
    the OAuth tokens their browser got for servers and services among them), OAuth codes not
    yet exchanged, and their login cookies. Returns how many tokens were deleted.

    One commit, before the rest of a lost authorization is undone: from then on no request
    with those credentials is the user's. Without the new cookie id a browser session would
    outlive a background refresh that ended the authorization by up to ``auth_refresh_age``
    (only then does the hub call refresh_user).
    """
    if getattr(user, "orm_user", None) is None:
        return 0
    db = user.db
    tokens = list(user.orm_user.api_tokens)
    for token in tokens:
        db.delete(token)
    for code in db.query(orm.OAuthCode).filter_by(user_id=user.orm_user.id):
        db.delete(code)
    user.cookie_id = new_token()  # login cookies carry the old one
    db.commit()
    return len(tokens)
