"""Shared set-up of the authenticator benchmarks: one provider, an EGI hub and a generic hub."""

from __future__ import annotations

import statistics
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.hub import HubProcess  # noqa: E402
from tests.harness.login import login  # noqa: E402
from tests.harness.provider import ProviderProcess, make_provider_config  # noqa: E402

ENTITLEMENT = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"


def users(n: int) -> dict[str, dict]:
    return {
        f"user{i}": {
            "password": f"user{i}",
            "claims": {
                "sub": f"sub-{i}",
                "voperson_id": f"user{i}@egi.eu",
                "eduperson_entitlement": [ENTITLEMENT],
            },
        }
        for i in range(n)
    }


def egi_config(provider: ProviderProcess, hub: HubProcess, extra: str = "") -> str:
    return textwrap.dedent(
        f"""
        c.JupyterHub.authenticator_class = "egicheckin"
        c.EGICheckinAuthenticator.oidc_issuer = {provider.issuer!r}
        c.EGICheckinAuthenticator.client_id = {provider.client_id!r}
        c.EGICheckinAuthenticator.client_secret = {provider.client_secret!r}
        c.EGICheckinAuthenticator.oauth_callback_url = "{hub.url}/hub/oauth_callback"
        c.EGICheckinAuthenticator.allowed_vos = {{"vo.notebooks.egi.eu"}}
        c.JupyterHub.log_level = "WARN"
        """
    ) + textwrap.dedent(extra)


def generic_config(provider: ProviderProcess, hub: HubProcess, extra: str = "") -> str:
    """Upstream GenericOAuthenticator at its defaults, as the seed's sample configures it."""
    return textwrap.dedent(
        f"""
        c.JupyterHub.authenticator_class = "generic-oauth"
        c.GenericOAuthenticator.client_id = {provider.client_id!r}
        c.GenericOAuthenticator.client_secret = {provider.client_secret!r}
        c.GenericOAuthenticator.oauth_callback_url = "{hub.url}/hub/oauth_callback"
        c.GenericOAuthenticator.authorize_url = {provider.endpoint("authorization")!r}
        c.GenericOAuthenticator.token_url = {provider.endpoint("token")!r}
        c.GenericOAuthenticator.userdata_url = {provider.endpoint("userinfo")!r}
        c.GenericOAuthenticator.username_claim = "voperson_id"
        c.GenericOAuthenticator.scope = ["openid", "profile", "email", "offline_access",
                                         "eduperson_entitlement", "voperson_id"]
        c.GenericOAuthenticator.enable_auth_state = True
        c.GenericOAuthenticator.allow_all = True
        c.JupyterHub.log_level = "WARN"
        """
    ) + textwrap.dedent(extra)


class Setup:
    """Two hubs (egi, generic), each the only client of its own provider, so that the
    providers' counters are per authenticator. Same users, same settings on both."""

    KINDS = ("egi", "generic")

    def __init__(
        self,
        n_users: int,
        hub_extra: str = "",
        implementation: str | None = None,
        **provider_settings,
    ) -> None:
        """``implementation``: the providers' (``"certified"`` or ``"ours"``, see
        ``ProviderProcess``)."""
        self.workdir = Path(tempfile.mkdtemp(prefix="egi-bench-"))
        self.hubs = {kind: HubProcess(self.workdir / kind) for kind in self.KINDS}
        self.providers = {kind: ProviderProcess(implementation) for kind in self.KINDS}
        self.n_users = n_users
        self.hub_extra = hub_extra
        self.provider_settings = provider_settings
        self.tokens: dict[str, list[str]] = {}

    def start(self) -> Setup:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        make_hub_config = {"egi": egi_config, "generic": generic_config}
        for kind in self.KINDS:
            hub, provider = self.hubs[kind], self.providers[kind]
            provider.start(
                make_provider_config(
                    f"{hub.url}/hub/oauth_callback",
                    f"{hub.url}/hub/login",
                    users=users(self.n_users),
                    **self.provider_settings,
                )
            )
            hub.config = make_hub_config[kind](provider, hub, self.hub_extra)
            hub.start()

    def login_all(self, kind: str) -> list[str]:
        """Log every user in through the provider form; one API token each."""
        hub = self.hubs[kind]

        def one(i: int) -> str:
            result = login(hub.url, f"user{i}")
            assert result.ok, result.response.text[:300]
            r = hub.api("POST", f"/users/user{i}@egi.eu/tokens", json={"note": "bench"})
            r.raise_for_status()
            return r.json()["token"]

        with ThreadPoolExecutor(8) as pool:
            self.tokens[kind] = list(pool.map(one, range(self.n_users)))
        return self.tokens[kind]

    def stop(self) -> None:
        for kind in self.KINDS:
            self.hubs[kind].stop()
            self.providers[kind].stop()


def spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4)
    return f"median {statistics.median(values):.2f} (IQR {q[0]:.2f}-{q[2]:.2f}, n={len(values)})"
