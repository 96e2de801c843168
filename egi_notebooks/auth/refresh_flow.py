"""The refresh flow of EGICheckinAuthenticator (a mixin: it needs the authenticator's traits).

``refresh_user`` is what JupyterHub calls on requests; ``refresh_tokens`` is the single-flight
refresh grant that it, the background refresher and the access-token endpoint share.
"""

from __future__ import annotations

import time
from inspect import isawaitable
from typing import Any

from jupyterhub import roles
from jupyterhub.utils import new_token
from tornado import web

from .discovery import DiscoveryError, IdTokenError
from .refresh import (
    ClientAuthError,
    InvalidGrant,
    ProviderError,
    RefreshBackoff,
    access_token_valid,
    needs_refresh,
)


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


class RefreshMixin:
    _refresh_backoff: RefreshBackoff | None = None

    @property
    def refresh_backoff(self) -> RefreshBackoff:
        """Per-user backoff of refresh grants while the provider fails (5 s, doubling up to
        ``background_refresh_max_backoff``), whoever asks: requests, the background refresh,
        the access-token endpoint. Consulted and updated by :meth:`refresh_tokens`."""
        if self._refresh_backoff is None:
            self._refresh_backoff = RefreshBackoff(
                first=min(5.0, self.background_refresh_max_backoff),
                maximum=self.background_refresh_max_backoff,
            )
        return self._refresh_backoff

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        """No network call while the access token is valid beyond the leeway."""
        if not self.enable_auth_state:
            return True
        auth_state = await user.get_auth_state()
        if self.refresh_user_hook is not None:
            refreshed = await self._call_refresh_user_hook(user, auth_state)
            if refreshed is not None:
                return refreshed
        if not auth_state:
            # never logged in with the provider: the probe user, service accounts, users an
            # admin created through the API. Nothing to refresh; the tokens service still
            # gives them no token. (False would make JupyterHub 5.5 refuse their spawns.)
            return True
        if not auth_state.get("access_token"):
            return False  # tokens dropped (VO lost, logout with revocation): log in again
        if not needs_refresh(auth_state, self.refresh_leeway):
            return True
        return await self.refresh_tokens(user)

    async def refresh_tokens(self, user: Any, force: bool = False) -> Any:
        """Single-flight refresh grant for ``user``: True, False (log in again) or an auth model.

        While :attr:`refresh_backoff` holds ``user`` back (unless ``force``) the provider is
        not asked: the stored access token is used while it is valid.
        """
        async with self._single_flight.hold(user.name):
            # another flight may have refreshed while we waited: decide on the stored state
            auth_state = await user.get_auth_state()
            if not auth_state or not auth_state.get("access_token"):
                return False
            if not force and not needs_refresh(auth_state, self.refresh_leeway):
                return True
            refresh_token = auth_state.get("refresh_token")
            if not refresh_token:
                return access_token_valid(auth_state)
            backoff = self.refresh_backoff
            if not force and backoff.waiting(user.name):
                return access_token_valid(auth_state)
            try:
                token_info = await self.post_token_endpoint(
                    self.build_refresh_token_request_params(refresh_token)
                )
                auth_model = await self.auth_model_from_refresh(user, auth_state, token_info)
            except InvalidGrant as e:
                # the stored token is dead: no quick retries of it (a new login clears this)
                backoff.failed(user.name)
                self.log.info("Refresh token of %s refused (%s): login required", user.name, e)
                return False
            except ClientAuthError as e:
                self.log_client_rejected(e)
                self.log_backoff(user.name, backoff.failed(user.name))
                # the stored tokens stay: they work again once the operator fixes the client
                return access_token_valid(auth_state)
            except (ProviderError, DiscoveryError, IdTokenError, web.HTTPError) as e:
                self.log_backoff(user.name, backoff.failed(user.name))
                return self.on_refresh_unavailable(user, auth_state, e)
            backoff.succeeded(user.name)
            self._provider_warned.discard(user.name)
            if not await self.is_still_authorized(user.name, auth_model):
                await self.drop_authorization(user, auth_model["auth_state"])
                # returning False makes the hub apply nothing: VO groups and admin go now
                apply_auth_model(user, auth_model, self.manage_groups)
                end_hub_login(user)
                return False
            await user.save_auth_state(auth_model["auth_state"])
            await self.on_tokens_refreshed(user, auth_model["auth_state"])
            return auth_model

    def log_backoff(self, name: str, delay: float) -> None:
        self.log.info("Token refresh of %s failed; next try in %.0f s at the earliest", name, delay)

    def log_client_rejected(self, error: Exception) -> None:
        """One error per ``client_error_log_interval``: the hub's client credentials are wrong.

        Every user's refresh fails the same way, so one line for all of them (never the secret).
        """
        now = time.monotonic()
        last = self._client_error_logged_at
        if last is not None and now - last < self.client_error_log_interval:
            return
        self._client_error_logged_at = now
        self.log.error(
            "%s refused the hub's client credentials (%s): check %s.client_id (%r) and"
            " client_secret (wrong, or rotated at the provider), and that the client may use"
            " the refresh_token grant. Sessions and refresh tokens are kept and refreshes are"
            " retried; a user must log in again once their access token expires."
            " (logged at most every %.0f s)",
            self.login_service,
            error,
            type(self).__name__,
            self.client_id,
            self.client_error_log_interval,
        )

    def on_refresh_unavailable(self, user: Any, auth_state: dict, error: Exception) -> bool:
        """The provider could not refresh: keep the session while the access token is valid."""
        valid = access_token_valid(auth_state)
        if user.name not in self._provider_warned:
            self._provider_warned.add(user.name)
            self.log.warning(
                "Cannot refresh tokens of %s: %s; %s",
                user.name,
                error,
                "keeping the current token until it expires" if valid else "login required",
            )
        return valid

    async def auth_model_from_refresh(
        self, user: Any, auth_state: dict[str, Any], token_info: dict[str, Any]
    ) -> dict[str, Any]:
        new_state = dict(auth_state)  # keys other code added survive
        fresh = await self.claims_after_refresh(token_info)
        if fresh is None:  # nothing fresh to go by (userinfo_on_refresh = never, no id_token)
            claims = dict(auth_state.get(self.user_auth_state_key) or {})
        else:
            # the verified answer is authoritative: a claim it leaves out is gone (Check-in
            # sends no entitlement claim at all to a user who has none left)
            claims = dict(fresh)
        # no rotation / no id_token in the response: keep the previous ones
        token_info = dict(token_info)
        for key in ("refresh_token", "id_token"):
            if not token_info.get(key):
                token_info[key] = auth_state.get(key)
        scope = token_info.get("scope", auth_state.get("scope") or [])
        new_state.update(
            {
                "access_token": token_info["access_token"],
                "refresh_token": token_info["refresh_token"],
                "id_token": token_info["id_token"],
                "scope": scope.split(" ") if isinstance(scope, str) else scope,
                "token_response": token_info,
                self.user_auth_state_key: claims,
                **self.expiry_fields(token_info),
            }
        )
        admin = True if user.name in self.admin_users else None
        auth_model = {"name": user.name, "admin": admin, "auth_state": new_state}
        if self.modify_auth_state_hook is not None:
            auth_model["auth_state"] = await self._call_modify_auth_state_hook(new_state)
        auth_model = await self.update_auth_model(auth_model)
        if self.manage_groups:
            # upstream's private helper (oauthenticator 17): groups + admin_groups, as at login
            auth_model = await self._apply_managed_groups(auth_model)
        return auth_model

    async def claims_after_refresh(self, token_info: dict[str, Any]) -> dict[str, Any] | None:
        """The user's current claims after a refresh, or None when nothing fresh is known.

        ``auto``: the verified id_token of the refresh response when it carries an entitlement
        claim, else userinfo (Check-in's id_tokens never carry entitlements: their absence
        there says nothing). ``always``: userinfo. ``never``: the verified id_token only.
        """
        mode = self.userinfo_on_refresh
        if token_info.get("id_token") and self.verify_id_token:
            # verified in every mode: it is stored (logout hint, subject checks) either way
            claims = await self.check_id_token(token_info)
            if mode == "never" or (
                mode == "auto" and any(name in claims for name in self.entitlements_claims)
            ):
                return claims
        if mode == "never":
            return None
        return await self.token_to_user(token_info)

    async def drop_authorization(self, user: Any, auth_state: dict[str, Any]) -> None:
        """The user lost the VO/entitlement: revoke the new tokens and forget them."""
        self.log.warning("%s is no longer authorized (VO or entitlement lost)", user.name)
        await self.forget_tokens(user, auth_state)

    async def on_tokens_refreshed(self, user: Any, auth_state: dict[str, Any]) -> None:
        """Run ``tokens_changed_hook`` (EGISpawner's writes the token Secrets) after the
        user's tokens changed; an error in it is logged: the tokens are stored already."""
        hook = getattr(self, "tokens_changed_hook", None)
        if hook is None:
            return  # a hub without EGISpawner: nobody to tell
        try:
            result = hook(self, user, auth_state)
            if isawaitable(result):
                await result
        except Exception:
            self.log.exception("Error in tokens_changed_hook for %s", user.name)
