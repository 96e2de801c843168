"""The refresh flow of EGICheckinAuthenticator (a mixin: it needs the authenticator's traits).

``refresh_user`` is what JupyterHub calls on requests; ``refresh_tokens`` is the single-flight
refresh grant that it, the background refresher and the access-token endpoint share.
"""

from __future__ import annotations

from typing import Any

from tornado import web

from .discovery import DiscoveryError, IdTokenError
from .refresh import InvalidGrant, ProviderError, access_token_valid, needs_refresh


class RefreshMixin:
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
        """Single-flight refresh grant for ``user``: True, False (log in again) or an auth model."""
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
            try:
                token_info = await self.post_token_endpoint(
                    self.build_refresh_token_request_params(refresh_token)
                )
                auth_model = await self.auth_model_from_refresh(user, auth_state, token_info)
            except InvalidGrant as e:
                self.log.info("Refresh token of %s refused (%s): login required", user.name, e)
                return False
            except (ProviderError, DiscoveryError, IdTokenError, web.HTTPError) as e:
                return self.on_refresh_unavailable(user, auth_state, e)
            self._provider_warned.discard(user.name)
            if not await self.is_still_authorized(user.name, auth_model):
                await self.drop_authorization(user, auth_model["auth_state"])
                return False
            await user.save_auth_state(auth_model["auth_state"])
            await self.on_tokens_refreshed(user, auth_model["auth_state"])
            return auth_model

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
        claims = dict(auth_state.get(self.user_auth_state_key) or {})
        claims.update(await self.claims_after_refresh(token_info))
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

    async def claims_after_refresh(self, token_info: dict[str, Any]) -> dict[str, Any]:
        """Current claims: the refresh response's id_token, else userinfo (userinfo_on_refresh)."""
        if self.userinfo_on_refresh != "always" and token_info.get("id_token"):
            claims = await self.check_id_token(token_info) if self.verify_id_token else {}
            if self.entitlements_claim in claims or self.userinfo_on_refresh == "never":
                return claims
        if self.userinfo_on_refresh == "never":
            return {}
        return await self.token_to_user(token_info)

    async def drop_authorization(self, user: Any, auth_state: dict[str, Any]) -> None:
        """The user lost the VO/entitlement: revoke the new tokens and forget them."""
        self.log.warning("%s is no longer authorized (VO or entitlement lost)", user.name)
        await self.forget_tokens(user, auth_state)

    async def on_tokens_refreshed(self, user: Any, auth_state: dict[str, Any]) -> None:
        """Tell the user's EGISpawners (token Secrets) about new or removed tokens."""
        spawners = getattr(user, "spawners", {}).values()
        if not any(hasattr(spawner, "update_token_secret") for spawner in spawners):
            return  # another spawner class: nothing to write (and kubespawner not imported)
        from ..spawner.token_secret import update_user_token_secrets

        await update_user_token_secrets(user, auth_state)
