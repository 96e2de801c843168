"""Kubernetes API trouble on Secret or claim: bounded retries, then a clear failure, no debris."""

from __future__ import annotations

import inspect

import pytest
from kubespawner import KubeSpawner

from egi_notebooks.spawner import EGISpawner, KubernetesTrouble

from .conftest import spawn


async def test_transient_5xx_on_secret_is_retried(cluster, make_spawner):
    cluster.k8s.inject_fault(verb="replace", plural="secrets", status=503, times=2)
    await spawn(make_spawner())
    assert cluster.k8s.objects("pods")


async def test_persistent_5xx_on_secret_fails_clearly_without_pod(cluster, make_spawner):
    cluster.k8s.inject_fault(plural="secrets", status=500, times=None)
    with pytest.raises(KubernetesTrouble) as failure:
        await spawn(make_spawner(k8s_api_attempts=3))
    assert str(failure.value) == (
        "Could not store your access token (Secret egi-token-alice): "
        "the Kubernetes API answered 500 Internal Server Error after 3 attempts."
    )
    assert cluster.k8s.count("replace", "secrets") == 3  # bounded
    assert not cluster.k8s.objects("pods") and not cluster.k8s.objects("secrets")


async def test_quota_403_on_claim_fails_clearly_and_leaves_nothing(cluster, make_spawner):
    cluster.k8s.inject_fault(
        verb="create",
        plural="persistentvolumeclaims",
        status=403,
        message='persistentvolumeclaims "claim-alice" is forbidden: exceeded quota: storage',
        times=None,
    )
    with pytest.raises(KubernetesTrouble, match="resource quota is exhausted after 2 attempts"):
        await spawn(make_spawner(k8s_api_attempts=2))
    assert not cluster.k8s.objects("pods") and not cluster.k8s.objects("secrets")
    assert not cluster.k8s.objects("persistentvolumeclaims")


async def test_409_when_secret_created_concurrently_then_replaced(cluster, make_spawner):
    # The replace finds nothing (404); meanwhile another server created it (409 on create).
    cluster.k8s.inject_fault(verb="create", plural="secrets", status=409, times=1)
    cluster.k8s.put_object("secrets", {"metadata": {"name": "egi-token-alice"}}, "hub")
    cluster.k8s.inject_fault(verb="replace", plural="secrets", status=404, times=1)
    await spawn(make_spawner())
    assert cluster.k8s.store[("secrets", "hub", "egi-token-alice")]["data"]["access_token"]


async def test_slow_api_times_out_with_bounded_retries(cluster, make_spawner):
    cluster.k8s.inject_fault(
        verb="get", plural="persistentvolumeclaims", delay=1.5, times=None, status=None
    )
    with pytest.raises(KubernetesTrouble, match="did not answer in time after 2 attempts"):
        await spawn(make_spawner(k8s_api_attempts=2, k8s_api_request_timeout=1))
    assert not cluster.k8s.objects("pods") and not cluster.k8s.objects("secrets")


async def test_pod_failure_removes_secret_this_spawn_created(cluster, make_spawner):
    cluster.k8s.inject_fault(verb="create", plural="pods", status=422, times=None)
    with pytest.raises(Exception, match="422"):
        await spawn(make_spawner())
    assert not cluster.k8s.objects("secrets")
    assert cluster.k8s.objects("persistentvolumeclaims")  # complete, and the user's home


def test_upstream_private_methods_we_override_still_exist():
    """Fails when kubespawner changes what EGISpawner overrides privately."""
    expected = {
        "_expand_user_properties": ["self", "template", "slug_scheme"],
        "_start": ["self"],
    }
    for name, params in expected.items():
        upstream = getattr(KubeSpawner, name)
        assert list(inspect.signature(upstream).parameters) == params, name
        assert getattr(EGISpawner, name) is not upstream
    called = {"_get_initialized_profile_list": ["self", "profile_list"], "_get_profile": None}
    for name, params in called.items():
        upstream = getattr(KubeSpawner, name)
        assert params is None or list(inspect.signature(upstream).parameters) == params
    # The VO filter is the callable profile_list: kubespawner must keep calling it with the
    # spawner for its form and before applying a profile.
    form_default = KubeSpawner._options_form_default.func  # a traitlets default handler
    assert "callable(self.profile_list)" in inspect.getsource(form_default)
    assert "profile_list(current_spawner)" in inspect.getsource(
        KubeSpawner._render_options_form_dynamically
    )
    assert "profile_list(self)" in inspect.getsource(KubeSpawner.load_user_options)
    source = inspect.getsource(KubeSpawner._start)
    # Our claim and Secret handling runs in load_user_options, which must stay first in
    # _start, and kubespawner must keep skipping claim creation when _pvc_exists is set.
    assert source.index("await self.load_user_options()") < source.index("self._pvc_exists")
    assert "if not self._pvc_exists:" in source
