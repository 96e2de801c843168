"""EGISpawner: KubeSpawner plus home storage, VO volumes, token Secret and VO profiles.

Operators' hooks and options (``pre_spawn_hook``, ``modify_pod_hook``, ``auth_state_hook``,
``profile_list``, ``volumes``, ``extra_annotations`` ...) keep working: this class adds its
behaviour around kubespawner's methods and never assigns those traits (an operator's
``profile_list`` is wrapped, on assignment, in the VO filter kubespawner then calls). The
pieces live in small modules: :mod:`.names`, :mod:`.storage`, :mod:`.token_secret`,
:mod:`.profiles`.
The authenticator reaches it only through its ``tokens_changed_hook``, which EGISpawner
sets (:func:`tokens_changed`): the authenticator never imports this package.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio.client import V1EnvVar, V1Volume, V1VolumeMount
from kubespawner import KubeSpawner
from kubespawner.utils import get_k8s_model
from tornado import web
from traitlets import Bool, Dict, Float, Integer, List, Unicode, default, validate

from .. import shared_servers
from ..identity import identity_of, legacy_names
from . import annotations as ann
from . import sharing, storage, token_secret
from .k8s_calls import RetryPolicy
from .names import user_server_slug, user_slug
from .profiles import Membership, VOFilteredProfiles, allowed, filter_profiles, requirement

#: how many of the last access tokens written to a token Secret are revoked when its server
#: is shared: more than can be live at once (a token lives for two refresh intervals at most)
DELIVERED_TOKENS_KEPT = 4


class ProfileRefused(web.HTTPError):
    """A spawn request named a profile the user may not use (shown on the spawn page)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.jupyterhub_message = message

    def __str__(self) -> str:
        return self.jupyterhub_message


class EGISpawner(KubeSpawner):
    """Spawn EGI Notebooks pods; see the package documentation for the behaviour."""

    # kubespawner's traits and state, declared for the type checker (kubespawner is untyped)
    pvc_name: str
    _pvc_exists: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._register_tokens_changed_hook()
        sharing.watch(self, self.share_check_interval)

    def _register_tokens_changed_hook(self) -> None:
        """Have the authenticator tell us about every change of a user's tokens.

        Registered by each instance, which is early enough: a refresh only concerns servers
        whose spawner exists, and JupyterHub creates the spawners of running servers at
        start-up (before any of their pods could need a refreshed token). An operator's own
        ``tokens_changed_hook`` is kept; it can call :func:`update_user_token_secrets`.
        """
        authenticator = self.authenticator
        if authenticator is not None and getattr(authenticator, "tokens_changed_hook", 0) is None:
            authenticator.tokens_changed_hook = tokens_changed

    # ----- configuration ------------------------------------------------------------------

    home_mount_path = Unicode(
        "/home/jovyan", config=True, help="Where the user's home claim is mounted."
    )
    home_claim_per_server = Bool(
        False,
        config=True,
        help="""Give each named server its own claim instead of sharing the user's home
        claim (changes the default of pvc_name_template to claim-{user_server_slug}).""",
    )
    adopt_legacy_claims = Bool(
        True,
        config=True,
        help="""On a spawn without a remembered claim, look for claims made before
        EGISpawner (legacy_claim_name_templates, then the egi.eu/user label) and reuse one.""",
    )
    legacy_claim_name_templates = List(
        Unicode(),
        config=True,
        help="""Claim names (kubespawner templates, expanded in both kubespawner slug
        schemes) tried, by name, before creating a new home claim. Default:
        zero-to-jupyterhub's claim-{username}, or claim-{user_server} with
        home_claim_per_server.""",
    )
    adopt_unbound_legacy_claims = Bool(
        False,
        config=True,
        help="""Adopt a claim made before EGISpawner recorded owners (egi-notebooks-hub
        1.0's, zero-to-jupyterhub's) by its username alone, for accounts bound to a provider
        identity. Off: such a claim is adopted only when `egi-notebooks migrate-users`
        recorded its username as a 1.0 name of the account's identity, because 1.0 usernames
        (changeable preferred_usernames) may have named another person. Turn on only if every
        username of this hub has always named the same person.""",
    )
    legacy_claim_scan = Bool(
        False,
        config=True,
        help="""Also list every component=singleuser-storage claim to find one annotated
        with the username (the older egi-notebooks-hub spawner's random names). Costs a
        namespace-wide list per first spawn: prefer labelling them once with
        `egi-notebooks migrate-claims` (storage.label_legacy_claims).""",
    )
    vo_volumes = Dict(
        config=True,
        help="""VO shared volumes: {pattern: {"claim": name, "mount_path": path,
        "write_roles": [roles], "sub_path": optional}}. The pattern is a VO or entitlement
        pattern (egi_notebooks.entitlements grammar). Mounted for members only, read-only
        unless an entitlement matched by the pattern has a role in write_roles.""",
    )
    token_secret_name_template = Unicode(
        "egi-token-{user_slug}",
        config=True,
        help="""Name of the per-user Secret holding access_token and id_token (never the
        refresh token). Fields: kubespawner's, plus {user_slug}, {user_server_slug}.""",
    )
    legacy_token_secret_name_templates = List(
        Unicode(),
        ["access-token-{userid}"],
        config=True,
        help="""Token Secrets of earlier spawners (kubespawner templates; default:
        egi-notebooks-hub 1.0's access-token-{userid}, {userid} being the hub user id),
        deleted at a server's first start or stop with EGISpawner and when the user is
        deleted, so that no stale token stays in the namespace. A name equal to the current
        token_secret_name is never deleted (set both to reuse the old Secrets).""",
    )
    token_mount_path = Unicode(
        "/var/run/secrets/egi.eu/",
        config=True,
        help="Where the token Secret is mounted (read-only) in the notebook container.",
    )
    token_file_env = Unicode(
        "EGI_ACCESS_TOKEN_FILE",
        config=True,
        help="Environment variable naming the access token file (the path, never the token).",
    )
    share_check_interval = Float(
        5,
        config=True,
        help="""Seconds between two reads of the hub database for shares of running servers.
        A share asked for through the hub's share API withholds the tokens before it exists;
        a share made otherwise (on a stopped server that starts, found at a hub start) has
        its token Secret emptied and the access tokens delivered to it revoked within this
        long; within this long of its last share ending the current tokens are written
        again. Read once per hub process, from the first spawner.""",
    )
    sharing_refused_profiles = List(
        Unicode(),
        config=True,
        help="""Profile slugs whose servers may not be shared: the share API refuses (403)
        shares and share codes of them; any found on them are deleted (within
        share_check_interval, after the tokens are withheld).""",
    )
    sharing_refused_vos = List(
        Unicode(),
        config=True,
        help="""VOs whose servers (by the server's primary VO) may not be shared: the share
        API refuses (403) shares and share codes of them; any found on them are deleted
        (within share_check_interval, after the tokens are withheld).""",
    )
    k8s_api_attempts = Integer(
        4, config=True, help="Attempts per Kubernetes call for Secrets and claims (bounded)."
    )
    k8s_api_backoff = Float(
        0.2, config=True, help="First pause between attempts, seconds; doubles, at most 2 s."
    )

    # ----- defaults from the seed's sample configuration ----------------------------------

    @default("mem_limit")
    def _default_mem_limit(self) -> str:
        return "1G"

    @default("mem_guarantee")
    def _default_mem_guarantee(self) -> str:
        return "512M"

    @default("cpu_limit")
    def _default_cpu_limit(self) -> float:
        return 2.0

    @default("cpu_guarantee")
    def _default_cpu_guarantee(self) -> float:
        return 0.02

    @default("default_url")
    def _default_default_url(self) -> str:
        return "/lab"

    @default("storage_capacity")
    def _default_storage_capacity(self) -> str:
        return "1Gi"

    @default("storage_access_modes")
    def _default_storage_access_modes(self) -> list[str]:
        # Named servers share the home claim and may run on different nodes.
        return ["ReadWriteMany"]

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self) -> bool:
        return True

    @default("delete_pvc")
    def _default_delete_pvc(self) -> bool:
        # Upstream deletes by default; notebooks must survive an accidental user deletion.
        return False

    @default("pvc_name_template")
    def _default_pvc_name_template(self) -> str:
        return "claim-{user_server_slug}" if self.home_claim_per_server else "claim-{user_slug}"

    @default("legacy_claim_name_templates")
    def _default_legacy_claim_name_templates(self) -> list[str]:
        return ["claim-{user_server}" if self.home_claim_per_server else "claim-{username}"]

    @validate("vo_volumes")
    def _validate_vo_volumes(self, proposal: Any) -> dict:
        storage.parse_vo_volumes(proposal.value)  # ValueError names the entry
        return proposal.value

    # ----- names ----------------------------------------------------------------------

    def _expand_user_properties(self, template: str, slug_scheme: str | None = None) -> str:
        # Private upstream method (kubespawner 7.1), overridden to add {user_slug} and
        # {user_server_slug} (collision-resistant, see .names) to every kubespawner
        # template; test_upstream_private_methods_we_override_still_exist
        # (tests/unit/spawner/test_faults.py) fails if it changes.
        server = getattr(self, "name", "") or ""
        template = template.replace("{user_slug}", user_slug(self.user.name)).replace(
            "{user_server_slug}", user_server_slug(self.user.name, server)
        )
        return super()._expand_user_properties(template, slug_scheme)

    @property
    def token_secret_name(self) -> str:
        return self._expand_user_properties(self.token_secret_name_template)

    @property
    def has_pod(self) -> bool:
        """Whether the (shared, in-memory) pod reflector knows this server's pod."""
        reflector = self.pod_reflector
        return bool(reflector) and f"{self.namespace}/{self.pod_name}" in reflector.pods

    @property
    def _policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=max(1, self.k8s_api_attempts),
            timeout=self.k8s_api_request_timeout,
            backoff=self.k8s_api_backoff,
        )

    def _labels(self) -> dict[str, str]:
        labels = self._build_common_labels(self._expand_all(self.storage_extra_labels))
        labels[ann.USER_SLUG_LABEL] = user_slug(self.user.name)
        return labels

    # ----- auth state, profiles ---------------------------------------------------------

    _membership: Membership = Membership()
    _identity: str | None = None  # egi_notebooks.identity: the account's provider identity
    _legacy_names: tuple[str, ...] = ()  # 1.0 names migrate-users recorded for it
    _loaded_annotations: dict[str, str] = {}
    _tokens: dict[str, str] | None = None
    _flavor: str | None = None
    _created_secret: bool = False
    _secret_write: asyncio.Future | None = None
    _written_secret_name: str | None = None  # last token Secret written (state: renames)
    _legacy_secrets_deleted: bool = False
    _sharing_blocked: bool = False  # this server's shares were seen and its tokens withheld
    # the last access tokens written to its Secret: those still live when a share appears
    # (one per refresh; Check-in's last an hour and are refreshed 10 min before expiry)
    _delivered_access_tokens: tuple[str, ...] = ()
    # share requests between before_share and after_share: no token is written meanwhile
    _share_pending: int = 0
    _refresh_due: bool = False  # tokens revoked by before_share: refresh the owner after it

    async def run_auth_state_hook(self, auth_state: dict | None) -> None:
        """Remember VO membership, the pod-visible tokens and the account's identity, then
        run the operator's hook."""
        self._learn(auth_state)
        await super().run_auth_state_hook(auth_state)

    def _learn(self, auth_state: dict | None) -> None:
        self._membership = Membership.from_auth_state(auth_state)
        self._tokens = token_secret.token_data(auth_state)
        # the provider identity the account is bound to (the authenticator records it)
        self._identity = identity_of(auth_state)
        self._legacy_names = tuple(legacy_names(auth_state))

    async def load_membership(self) -> Membership:
        """The user's VO membership: as the auth_state hook saw it, else read now."""
        if not self._membership.known:
            self._learn(await self.user.get_auth_state())
        return self._membership

    @validate("profile_list")
    def _vo_filtered_profile_list(self, proposal: Any) -> Any:
        # kubespawner calls a callable profile_list with the spawner, both to render its own
        # spawn form and to apply the chosen profile: wrapped, both offer only what the
        # user's VOs allow, checked at each request (VOs change at a token refresh).
        value = proposal["value"]
        if not value or isinstance(value, VOFilteredProfiles):
            return value
        return VOFilteredProfiles(value, EGISpawner.load_membership)

    async def _check_profile(self) -> None:
        """Refuse a forbidden profile with a clear message; remember the chosen flavour."""
        profiles = self.profile_list
        configured = await profiles.all_profiles(self) if profiles else []
        if not configured:
            self._flavor = None
            return
        membership = await self.load_membership()
        offered = self._get_initialized_profile_list(filter_profiles(configured, membership))
        wanted = (self.user_options or {}).get("profile")
        if wanted and not any(p["slug"] == wanted for p in offered):
            for profile in self._get_initialized_profile_list(configured):
                if profile["slug"] == wanted and not allowed(profile, membership):
                    raise ProfileRefused(
                        403,
                        f"Profile {wanted!r} is not available to you: it requires "
                        f"{requirement(profile)}.",
                    )
            raise ProfileRefused(400, f"No such profile: {wanted!r}.")
        if not offered:
            raise ProfileRefused(403, "None of the configured profiles is available to you.")
        self._flavor = self._get_profile(wanted, offered)["slug"]

    async def load_user_options(self) -> None:
        """Apply the (allowed) profile, then settle the home claim and the token Secret.

        kubespawner's ``_start`` calls this first, before it creates the claim and pod; the
        token Secret write started here is awaited by :meth:`get_pod_manifest`, so both
        exist before the pod does.
        """
        await self.load_membership()
        await self._check_profile()
        await super().load_user_options()
        # The Secret write runs alongside the claim lookup/creation and kubespawner's
        # reflector start-up; get_pod_manifest waits for it, so the Secret still exists
        # before the pod is created. The claim must be settled here: kubespawner creates
        # its own claim right after this returns unless _pvc_exists is set.
        self._secret_write = asyncio.ensure_future(self._settle_token_secrets(self._tokens or {}))
        if self.storage_pvc_ensure:
            await self._ensure_home_claim()

    async def _ensure_home_claim(self) -> None:
        if self._pvc_exists:  # remembered in state: no API call at all
            return
        adopt = self.adopt_legacy_claims
        templates = self.legacy_claim_name_templates if adopt else []
        legacy = [self._expand_user_properties(t) for t in templates] + [
            self._expand_user_properties(t, slug_scheme="escape") for t in templates
        ]
        claimant = storage.Claimant(
            self.user.name, self._identity, self._legacy_names, self.adopt_unbound_legacy_claims
        )
        found = await storage.find_home_claim(
            self.api,
            self.namespace,
            claimant,
            self.pvc_name,
            legacy,
            self._policy,
            self.log,
            scan=adopt and self.legacy_claim_scan,
            by_label=adopt and not (self.home_claim_per_server and self.name),
        )
        if found:
            if found != self.pvc_name:
                self.log.info("Adopting claim %s for %s", found, self.user.name)
            self.pvc_name = found
        else:
            manifest = self.get_pvc_manifest()
            manifest.metadata.labels = {**(manifest.metadata.labels or {}), **self._labels()}
            if self._identity:  # whose it is, for any later adoption (storage._verdict)
                manifest.metadata.annotations = {
                    **(manifest.metadata.annotations or {}),
                    ann.OWNER_IDENTITY: self._identity,
                }
            await storage.create_claim(self.api, self.namespace, manifest, self._policy, self.log)
        self._pvc_exists = True  # kubespawner then skips its own claim creation

    async def _write_token_secret(self, data: dict[str, str]) -> bool:
        name = self.token_secret_name
        if data and self._secret_shared():
            data = token_secret.blank_data()
        delivered = token_secret.access_token_in(data)
        created = await token_secret.write_token_secret(
            self.api,
            self.namespace,
            name,
            data,
            self._labels(),
            self._build_common_annotations({}),
            self._policy,
            self.log,
        )
        self._created_secret = self._created_secret or created
        self._written_secret_name = name
        if delivered:
            kept = [t for t in self._delivered_access_tokens if t != delivered]
            self._delivered_access_tokens = (*kept, delivered)[-DELIVERED_TOKENS_KEPT:]
        return created

    # ----- sharing (see .sharing) ---------------------------------------------------------

    @property
    def sharing_blocked(self) -> bool:
        return self._sharing_blocked

    def _servers_on_secret(self) -> list[EGISpawner]:
        """This server and the user's other live servers that mount the same Secret."""
        name = self.token_secret_name
        others = [
            s
            for s in list(getattr(self.user, "spawners", {}).values())
            if isinstance(s, EGISpawner)
            and s is not self
            and (s.active or s.has_pod)
            and s.token_secret_name == name
        ]
        return [self, *others]

    def _secret_shared(self) -> bool:
        """Whether this server, or another live one mounting the same Secret, is shared now
        or has been since it started (read from the hub database at each write, so no token
        follows a share, nor outlives it in a server a guest was in)."""
        db = sharing.session_of(self)
        servers = [s for s in self._servers_on_secret() if s.orm_spawner is not None]
        if any(s._share_pending for s in self._servers_on_secret()):
            return True  # a share is being made: it may exist by the time the pod reads this
        if db is None or not servers:
            return False
        # not _sharing_blocked: that says the delivered tokens were revoked, which only
        # sharing_started does
        return any(shared_servers.shared_since_start(db, s.orm_spawner) for s in servers)

    def sharing_refusal(self) -> str | None:
        # after a hub restart, before any auth_state: what the pod's annotations recorded
        return sharing.sharing_refusal(
            self._flavor or self._loaded_annotations.get(ann.FLAVOR),
            self._membership.primary_vo or self._loaded_annotations.get(ann.PRIMARY_VO),
            self.sharing_refused_profiles,
            self.sharing_refused_vos,
        )

    def _shared_in_db(self) -> bool:
        """Shared now, or since this server started (then until it restarts)."""
        db = sharing.session_of(self)
        if db is None or self.orm_spawner is None:
            return False
        return shared_servers.shared_since_start(db, self.orm_spawner)

    async def before_share(self) -> str | None:
        """Called by the share API before JupyterHub creates a share or share code of this
        server: why it may not be shared, else ``None`` once its Secret is empty and the
        access tokens it may hold are revoked. Raises when that cannot be done (the share is
        then refused). Always followed by :meth:`after_share`."""
        self._share_pending += 1
        refusal = self.sharing_refusal()
        if refusal:
            return refusal
        if not (self.active or self.has_pod):
            return None  # nothing delivered; a start writes an empty Secret, the watcher revokes
        if not (self._sharing_blocked and self._shared_in_db()):
            self._refresh_due = True  # after_share refreshes, or restores if no share is made
            await self._withhold_tokens(strict=True)
        return None

    async def after_share(self) -> None:
        """The share request is over (share made or not): refresh the owner whose token was
        revoked (the Secret stays empty if the share exists), restore the tokens if not."""
        self._share_pending = max(0, self._share_pending - 1)
        if self._share_pending:
            return  # another share request of this server is still being made
        withheld, self._refresh_due = self._refresh_due, False
        if withheld:
            try:
                await self._refresh_owner()
            except Exception as e:  # the background refresh tries again; restore anyway
                self.log.warning("Could not refresh the tokens of %s: %s", self._log_name, e)
        if (withheld or self._sharing_blocked) and not self._shared_in_db():
            await self.sharing_ended()

    async def sharing_started(self) -> None:
        """A share of this server was seen: empty its Secret, revoke the access tokens it may
        have received, get the owner new ones (which go to no shared server); then delete
        the shares if this server may not be shared. Recorded as shared: no token reaches it
        again until it restarts."""
        shared_servers.mark(sharing.session_of(self), self.orm_spawner)
        if not self._sharing_blocked:
            await self._withhold_tokens(strict=False)
            await self._refresh_owner()
        refusal = self.sharing_refusal()
        if refusal:
            deleted = sharing.delete_shares(sharing.session_of(self), self.orm_spawner.id)
            self.log.warning("Deleted %s shares of %s: %s", deleted, self._log_name, refusal)

    async def sharing_ended(self) -> None:
        """No share of this server is left. If one existed since it started, nothing changes:
        a guest may have copied its token or left a process, so the tokens stay withheld
        until it restarts. If none did (a share request that made no share), its Secret
        gets the current tokens again."""
        if self._share_pending:
            return  # a share is being made: after_share decides
        if self._shared_in_db():
            return
        self._sharing_blocked = False
        self.log.info("%s was not shared: tokens are delivered again", self._log_name)
        auth_state = await self.user.get_auth_state() or {}
        await update_user_token_secrets(self.user, auth_state)

    async def _withhold_tokens(self, strict: bool) -> None:
        """Empty the Secret and revoke the access tokens this server may hold; ``strict``:
        raise unless the provider confirmed every revocation. Blocked once done (a failed
        attempt is tried again at the watcher's next check)."""
        self.log.info("%s is shared: its token Secret is emptied", self._log_name)
        await self._write_token_secret(token_secret.blank_data())
        revoked, wanted = await self._revoke_delivered_tokens()
        self.log.info("Revoked %s access tokens delivered to %s", revoked, self._log_name)
        if strict and revoked < wanted:
            raise RuntimeError(f"the provider confirmed {revoked} of {wanted} revocations")
        self._sharing_blocked = True

    async def _revoke_delivered_tokens(self) -> tuple[int, int]:
        """Revoke the access tokens this server may hold: how many the provider confirmed
        revoked, of how many."""
        # the authenticator's hook (EGICheckinAuthenticator has it; others cannot revoke)
        revoke = getattr(self.authenticator, "revoke_access_tokens", None)
        if revoke is None:
            return 0, 0
        auth_state = await self.user.get_auth_state() or {}
        # the Secret's recent tokens (written by any server mounting it), and the one the
        # tokens service hands out until it sees the share
        servers = self._servers_on_secret()
        candidates: list[Any] = [t for s in servers for t in s._delivered_access_tokens]
        candidates.append(auth_state.get("access_token"))
        # and what the hub's access-token endpoint (the tokens service) handed the server
        candidates += shared_servers.delivered.of(self.orm_spawner.id)
        tokens = {t for t in candidates if isinstance(t, str) and t}
        revoked = await revoke(sorted(tokens)) if tokens else 0
        if revoked == len(tokens):
            shared_servers.delivered.forget(self.orm_spawner.id, tokens)
            for server in servers:
                server._delivered_access_tokens = ()
        return revoked, len(tokens)

    async def _refresh_owner(self) -> None:
        """The stored access token was revoked: the owner's other uses need a new one."""
        refresh = getattr(self.authenticator, "refresh_tokens", None)
        auth_state = await self.user.get_auth_state() or {}
        if refresh is not None and auth_state.get("refresh_token"):
            await refresh(self.user, force=True)

    async def _settle_token_secrets(self, data: dict[str, str]) -> bool:
        stale = self._stale_token_secret_names()  # before the write records the new name
        created = await self._write_token_secret(data)
        await self._delete_stale_token_secrets(stale)
        return created

    def _stale_token_secret_names(self) -> list[str]:
        """Token Secrets this server no longer uses: the earlier spawners' (until deleted
        once) and the one last written under another name (a renamed user, a changed
        template)."""
        names = []
        if not self._legacy_secrets_deleted:
            names = [
                self._expand_user_properties(t) for t in self.legacy_token_secret_name_templates
            ]
        if self._written_secret_name:
            names.append(self._written_secret_name)
        current = self.token_secret_name
        return [
            n
            for n in dict.fromkeys(names)
            if n != current and not self._token_secret_in_use_elsewhere(n)
        ]

    async def _delete_stale_token_secrets(self, names: list[str]) -> None:
        """Delete ``names``; a failure is a warning (tried again at the next start or stop),
        never a failed spawn."""
        try:
            for name in names:
                await token_secret.delete_token_secret(
                    self.api, self.namespace, name, self._policy, self.log
                )
                self.log.info("Deleted old token Secret %s of %s", name, self._log_name)
        except Exception as e:
            self.log.warning("Could not delete old token Secret of %s: %s", self._log_name, e)
            return
        self._legacy_secrets_deleted = True
        if self._written_secret_name in names:
            self._written_secret_name = None

    async def _token_secret_written(self) -> None:
        """Wait for the Secret write started by load_user_options (raises its error)."""
        pending, self._secret_write = self._secret_write, None
        if pending is not None:
            await pending

    async def update_token_secret(self, auth_state: Mapping[str, Any]) -> None:
        """Write the tokens of a (refreshed) auth_state to this server's token Secret."""
        self._tokens = token_secret.token_data(auth_state)
        await self._write_token_secret(self._tokens)

    async def delete_token_secret(self) -> None:
        await token_secret.delete_token_secret(
            self.api, self.namespace, self.token_secret_name, self._policy, self.log
        )

    # ----- the pod ------------------------------------------------------------------------

    async def get_pod_manifest(self) -> Any:
        """kubespawner's pod plus home, VO and token volumes and the accounting annotations."""
        await self._token_secret_written()
        pod = await super().get_pod_manifest()
        spec, container = pod.spec, pod.spec.containers[0]
        spec.volumes = list(spec.volumes or [])
        container.volume_mounts = list(container.volume_mounts or [])
        container.env = list(container.env or [])

        def add(volume: dict, mount: dict) -> None:
            taken = {m.mount_path.rstrip("/") for m in container.volume_mounts}
            if mount["mountPath"].rstrip("/") in taken:
                self.log.warning("Not mounting %s: %s is taken", volume["name"], mount["mountPath"])
                return
            spec.volumes.append(get_k8s_model(V1Volume, volume))
            container.volume_mounts.append(get_k8s_model(V1VolumeMount, mount))

        claims = {
            v.persistent_volume_claim.claim_name for v in spec.volumes if v.persistent_volume_claim
        }
        if self.storage_pvc_ensure and self.pvc_name not in claims:
            add(
                {"name": "home", "persistentVolumeClaim": {"claimName": self.pvc_name}},
                {"name": "home", "mountPath": self.home_mount_path},
            )
        for volume, mount in storage.vo_mounts(
            storage.parse_vo_volumes(self.vo_volumes), self._membership
        ):
            add(volume, mount)
        add(
            {"name": "egi-token", "secret": {"secretName": self.token_secret_name}},
            {"name": "egi-token", "mountPath": self.token_mount_path, "readOnly": True},
        )
        token_file = self.token_mount_path.rstrip("/") + "/access_token"
        container.env.append(V1EnvVar(name=self.token_file_env, value=token_file))
        self._pod_image = container.image
        pod.metadata.annotations = {
            **(pod.metadata.annotations or {}),
            **self.accounting_annotations(),
        }
        return pod

    _pod_image: str | None = None  # the image of the pod this spawner last made

    def accounting_annotations(self) -> dict[str, str]:
        """The pod annotations accounting reads (primary VO, flavor, image, hub username).

        Only what the spawner decided: the primary VO computed from the user's entitlements,
        the profile it applied and the image in the pod manifest; never the spawn request's
        ``user_options``, which the user writes. After a hub restart kubespawner's ``image``
        and the flavour are the configured defaults again (profiles apply at start): the
        recorded ones stay.
        """
        annotations = {ann.USERNAME: self.user.name}
        if self._membership.primary_vo:
            annotations[ann.PRIMARY_VO] = self._membership.primary_vo
        flavor = self._flavor or self._loaded_annotations.get(ann.FLAVOR)
        if flavor:
            annotations[ann.FLAVOR] = flavor
        image = self._pod_image or self._loaded_annotations.get(ann.IMAGE)
        if image:
            annotations[ann.IMAGE] = image
        return annotations

    def get_state(self) -> dict[str, Any]:
        # The hub's server model carries the spawner state but not the pod: accounting
        # (with admin:server_state, not admin:auth_state) reads the annotations from here.
        state = super().get_state()
        if self._written_secret_name:
            state["token_secret_name"] = self._written_secret_name
        if self._legacy_secrets_deleted:
            state["legacy_token_secrets_deleted"] = True
        if self._membership.known or self._flavor:
            state["annotations"] = self.accounting_annotations()
        elif self._loaded_annotations:  # after a hub restart, before any auth_state
            state["annotations"] = dict(self._loaded_annotations)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self._written_secret_name = state.get("token_secret_name") or self._written_secret_name
        self._legacy_secrets_deleted = bool(
            state.get("legacy_token_secrets_deleted") or self._legacy_secrets_deleted
        )
        annotations = state.get("annotations")
        self._loaded_annotations = dict(annotations) if isinstance(annotations, dict) else {}

    def clear_state(self) -> None:
        super().clear_state()
        self._sharing_blocked = False  # a (re)start: a new server token, nothing withheld yet
        self._loaded_annotations = {}
        self._pod_image = None

    async def _start(self) -> Any:
        # Private upstream method (kubespawner 7.1): the one coroutine spanning the whole
        # spawn, so the only place to undo a token Secret this spawn created when a later
        # step (claim, pod) fails: no half-made objects are left behind.
        self._created_secret = False
        try:
            return await super()._start()
        except BaseException:
            if self._secret_write is not None:  # a claim step failed during the write
                with contextlib.suppress(BaseException):
                    await self._token_secret_written()
            if self._created_secret:
                try:
                    await self.delete_token_secret()
                except Exception:
                    self.log.exception("Could not remove token Secret after failed spawn")
            raise

    async def stop(self, now: bool = False) -> None:
        await super().stop(now)
        # A server started by an earlier spawner (pods outlive a hub upgrade) still had its
        # old token Secret until now.
        stale = self._stale_token_secret_names()
        if stale:
            await self._delete_stale_token_secrets(stale)

    # ----- deletion -----------------------------------------------------------------------

    def _token_secret_in_use_elsewhere(self, name: str | None = None) -> bool:
        """Whether another server of this user, running or starting, mounts the Secret
        ``name`` (default: our current one)."""
        name = name or self.token_secret_name
        for other in list(getattr(self.user, "spawners", {}).values()):
            if other is self or (getattr(other, "name", "") or "") == (self.name or ""):
                continue
            if not isinstance(other, EGISpawner):
                continue
            live = other.active or other.has_pod
            if live and name in (other.token_secret_name, other._written_secret_name):
                return True
        return False

    async def delete_forever(self) -> None:
        """Delete the token Secret unless a live server still uses it; claims only when
        opted in and not shared.

        Replaces kubespawner's version, which deletes claims by default. JupyterHub calls it
        for every server of a deleted user and for a named server deleted on its own; the two
        look the same from here. A user who only ever had named servers has no default
        server to do it, so any server removes the (per-user) Secret when no other server
        of the user is running or starting: no token lingers after the user is gone, and a
        user who keeps only stopped servers gets the Secret rewritten at the next spawn.
        """
        if not self._token_secret_in_use_elsewhere():
            await self.delete_token_secret()
        await self._delete_stale_token_secrets(self._stale_token_secret_names())
        own_claim = not self.name or self.home_claim_per_server
        if not (self.delete_pvc and own_claim):
            self.log.info("Keeping claim %s of %s", self.pvc_name, self._log_name)
            return
        vo_claims = {v.claim for v in storage.parse_vo_volumes(self.vo_volumes)}
        if self.pvc_name in vo_claims:
            return
        await storage.delete_claim(self.api, self.namespace, self.pvc_name, self._policy, self.log)


async def update_user_token_secrets(user: Any, auth_state: Mapping[str, Any]) -> int:
    """Write refreshed tokens to the token Secret of each EGISpawner of ``user`` that is
    active or has a pod.

    ``user`` is a ``jupyterhub.user.User``, ``auth_state`` the new one (stripped of its
    tokens after a logout or a lost authorization: the Secrets are then emptied). Servers
    sharing one Secret cause one write. A failure is logged per Secret and does not stop
    the others. Returns the number of Secrets written.
    """
    written, seen = 0, set()
    # a shared server's Secret is written empty (EGISpawner._write_token_secret)
    for spawner in list(user.spawners.values()):
        if not isinstance(spawner, EGISpawner) or not (spawner.active or spawner.has_pod):
            continue
        key = (spawner.namespace, spawner.token_secret_name)
        if key in seen:
            continue
        seen.add(key)
        try:
            await spawner.update_token_secret(auth_state)
            written += 1
        except Exception:
            spawner.log.exception("Could not update token Secret %s/%s", *key)
    return written


async def tokens_changed(authenticator: Any, user: Any, auth_state: Mapping[str, Any]) -> None:
    """The authenticator's ``tokens_changed_hook`` that EGISpawner registers: push the
    user's new (or removed) tokens to the token Secrets of their running servers."""
    await update_user_token_secrets(user, auth_state)
