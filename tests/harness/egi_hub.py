"""A real hub with EGICheckinAuthenticator pointed at a real local OIDC provider."""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .hub import HubProcess
from .k8s.process import EmulatorProcess
from .provider import ProviderProcess, make_provider_config, marked_implementation


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        'provider(implementation): the local OIDC provider a test runs against: "certified" '
        '(npm oidc-provider as EGI Check-in) or "ours" (fault injection)',
    )


class EGIHub:
    """Provider + hub, started together; ``hub_config`` is appended to the hub config."""

    def __init__(
        self,
        workdir: Path,
        hub_config: str = "",
        provider_implementation: str | None = None,
        **provider_settings: Any,
    ) -> None:
        self.hub = HubProcess(workdir)
        self.provider = ProviderProcess(provider_implementation)
        self.provider_settings = provider_settings
        self.hub_config = textwrap.dedent(hub_config)
        self.k8s: EmulatorProcess | None = None  # set by on_cluster

    def start(self) -> EGIHub:
        config = make_provider_config(
            f"{self.hub.url}/hub/oauth_callback",
            f"{self.hub.url}/hub/login",
            **self.provider_settings,
        )
        self.provider.start(config)
        self.hub.config = self.authenticator_config() + self.hub_config
        self.hub.start()
        return self

    def authenticator_config(self) -> str:
        return textwrap.dedent(
            f"""
            c.JupyterHub.authenticator_class = "egicheckin"
            c.EGICheckinAuthenticator.oidc_issuer = {self.provider.issuer!r}
            c.EGICheckinAuthenticator.client_id = {self.provider.client_id!r}
            c.EGICheckinAuthenticator.client_secret = {self.provider.client_secret!r}
            c.EGICheckinAuthenticator.oauth_callback_url = "{self.hub.url}/hub/oauth_callback"
            c.EGICheckinAuthenticator.allowed_vos = {{"vo.notebooks.egi.eu", "vo.access.egi.eu"}}
            c.EGICheckinAuthenticator.admin_entitlements = {{"vo.notebooks.egi.eu:role=manager"}}
            c.EGICheckinAuthenticator.vo_priority = ["vo.access.egi.eu"]
            c.EGICheckinAuthenticator.discovery_retries = 1
            c.EGICheckinAuthenticator.discovery_backoff = 0.2
            """
        )

    def stop(self) -> None:
        self.hub.stop()
        self.provider.stop()

    def user_model(self, name: str) -> dict[str, Any]:
        r = self.hub.api("GET", f"/users/{name}")
        r.raise_for_status()
        return r.json()

    def auth_state(self, name: str) -> dict[str, Any]:
        return self.user_model(name).get("auth_state") or {}


def kube_spawner_config(namespace: str, timeout: int = 90) -> str:
    """EGISpawner in ``namespace`` of the emulated cluster, running jupyterhub-singleuser."""
    return f"""
c.JupyterHub.spawner_class = "egi-kubespawner"
c.EGISpawner.namespace = {namespace!r}
c.EGISpawner.cmd = ["jupyterhub-singleuser"]
c.EGISpawner.args = ["--ServerApp.allow_root=True"]
c.EGISpawner.start_timeout = {timeout}
c.EGISpawner.http_timeout = {timeout}
c.EGISpawner.k8s_api_request_timeout = 5
"""


@contextlib.contextmanager
def on_cluster(egi: EGIHub, workdir: Path) -> Iterator[EGIHub]:
    """``egi`` started against the Kubernetes emulator (a process, as a cluster is; its
    pods run as processes), as ``egi.k8s``; both stopped after."""
    emulator = EmulatorProcess(workdir, run_processes=True).start()
    egi.hub.env["KUBECONFIG"] = str(emulator.kubeconfig)
    egi.k8s = emulator
    try:
        egi.start()
        yield egi
    finally:
        egi.stop()
        emulator.stop()


@pytest.fixture
def egi_hub_factory(tmp_path, request):
    """``start(hub_config="", **provider_settings) -> EGIHub``; stopped at teardown. The
    provider is the one the test's ``provider`` marker names (``provider_implementation=``
    overrides it)."""
    started: list[EGIHub] = []

    def start(
        hub_config: str = "", provider_implementation: str | None = None, **provider_settings: Any
    ) -> EGIHub:
        egi = EGIHub(
            tmp_path / f"hub{len(started)}",
            hub_config,
            provider_implementation or marked_implementation(request),
            **provider_settings,
        )
        started.append(egi)
        return egi.start()

    yield start
    for egi in started:
        egi.stop()
