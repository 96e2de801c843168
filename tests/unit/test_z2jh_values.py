"""docs/deploy/values.yaml -> hub configuration as the z2jh chart builds it (harness/z2jh.py)."""

from __future__ import annotations

import secrets
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import yaml
from traitlets.config import Config

from tests.harness.k8s import reset_kubespawner, running_emulator, use_emulator
from tests.harness.z2jh import (
    Chart,
    UnsupportedValues,
    fill_placeholders,
    load_values,
    merge,
    unsupported,
)

VALUES = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "values.yaml"
HOST = "notebooks.example.org"


def docs_values() -> dict:
    text = VALUES.read_text().replace("https://<your notebooks host>", f"https://{HOST}")
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    fills = {"<your notebooks host>": HOST, "<tag>": "1.0"}
    return load_values(fill_placeholders(text, lambda p: fills.get(p, secrets.token_hex(8))))


def applied(values: dict, monkeypatch) -> tuple[Chart, Config]:
    monkeypatch.setenv("EGI_ACCOUNTING_DB_URL", "postgresql+psycopg2://acc@db/acc")
    monkeypatch.setenv("POD_NAMESPACE", "notebooks")
    chart = Chart(values, namespace="notebooks")
    c = Config()
    chart.apply(c)
    return chart, c


def test_docs_values_use_only_implemented_keys():
    assert unsupported(docs_values()) == []


def test_an_unknown_key_fails_loudly():
    values = docs_values()
    values["singleuser"]["storage"] = {"type": "dynamic"}
    values["hub"]["extraFiles"] = {"x": {"mountPath": "/x"}}
    problems = unsupported(values)
    assert "hub.extraFiles.x.mountPath" in problems
    assert any("singleuser.storage.type=dynamic" in p for p in problems)
    with pytest.raises(UnsupportedValues, match="hub.extraFiles"):
        load_values(yaml.safe_dump(values))


def test_helm_merge_semantics():
    merged = merge({"a": {"b": 1, "c": 2}, "l": [1, 2], "n": "x"}, {"a": {"b": 3}, "l": [9]})
    assert merged == {"a": {"b": 3, "c": 2}, "l": [9], "n": "x"}
    assert merge({"a": {"b": 1}}, {"a": {"b": None}}) == {"a": {}}  # null removes a default


def test_services_on_the_hub_service_are_exposed_to_the_proxy(monkeypatch):
    values = docs_values()
    chart, c = applied(values, monkeypatch)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert {"tokens", "status", "accounting", "jupyterhub-idle-culler"} <= set(services)
    for name in ("tokens", "status", "accounting"):
        assert urlsplit(services[name]["url"]).hostname == "hub"
    assert chart.cluster_problems(c.JupyterHub.services) == []
    # a port the Service does not expose, or the NetworkPolicy does not open, is reported
    values["hub"]["service"]["extraPorts"] = values["hub"]["service"]["extraPorts"][1:]
    values["hub"]["networkPolicy"]["ingress"][0]["ports"] = [{"port": 10101}]
    chart, c = applied(values, monkeypatch)
    problems = chart.cluster_problems(c.JupyterHub.services)
    assert any("extraPorts lacks 10101" in p for p in problems)
    assert any("proxy reach port 10102" in p for p in problems)


def test_public_urls_are_on_an_ingress_host(monkeypatch):
    values = docs_values()
    values["ingress"]["hosts"] = ["other.example.org"]
    chart, c = applied(values, monkeypatch)
    problems = chart.cluster_problems([])
    assert any("oauth_callback_url" in p for p in problems)
    assert any("EGI_NOTEBOOKS_TOKEN_URL" in p for p in problems)


def test_hub_config_passes_through_and_extra_config_runs_last_in_key_order(monkeypatch):
    values = docs_values()
    values["hub"]["extraConfig"] = {
        "b-second": "c.JupyterHub.template_vars = {**c.JupyterHub.template_vars, 'order': 'ab'}",
        "a-first": "c.JupyterHub.template_vars = {'order': 'a', "
        "'seen': c.JupyterHub.spawner_class}",
    }
    _, c = applied(values, monkeypatch)
    assert c.JupyterHub.template_vars == {"order": "ab", "seen": "egi-kubespawner"}
    assert c.JupyterHub.authenticator_class == "egicheckin"
    assert c.CryptKeeper["keys"] == values["hub"]["config"]["CryptKeeper"]["keys"]
    assert c.JupyterHub.admin_access is True  # the chart's default hub.config
    values["hub"]["config"]["loadRoles"] = {}
    with pytest.raises(UnsupportedValues, match="loadRoles"):
        applied(values, monkeypatch)


def test_hub_environment_from_the_operators_secret():
    values = docs_values()
    chart = Chart(values, namespace="notebooks")
    env = chart.hub_env(lambda name, key: f"<{name}/{key}>")
    assert env["EGI_ACCOUNTING_DB_URL"] == "<egi-notebooks-accounting/db-url>"
    assert env["CONFIGPROXY_AUTH_TOKEN"] == values["proxy"]["secretToken"]
    assert env["POD_NAMESPACE"] == "notebooks"


class _User:
    name = "alice@egi.eu"
    id = 1
    url = "/user/alice@egi.eu/"
    escaped_name = "alice@egi.eu"
    spawners: dict = {}

    async def get_auth_state(self):
        return None


@pytest.fixture
async def cluster(tmp_path):
    # kubespawner loads a kubeconfig when a spawner is made
    async with running_emulator() as cluster:
        use_emulator(cluster.url, tmp_path)
        yield cluster
        await reset_kubespawner()


def spawner_with(c: Config):
    from egi_notebooks.spawner import EGISpawner

    orm = SimpleNamespace(name="", server=None, user_options={})
    return EGISpawner(_mock=True, user=_User(), orm_spawner=orm, config=c)


async def test_chart_singleuser_keys_beat_egispawner_defaults(monkeypatch, cluster):
    """c.KubeSpawner (the chart) beats EGISpawner's class defaults: without
    singleuser.memory.guarantee the chart's 1G applies, not EGISpawner's 512M."""
    values = docs_values()
    values["singleuser"].pop("memory", None)
    values["singleuser"].pop("cpu", None)
    _, c = applied(values, monkeypatch)
    spawner = spawner_with(c)
    assert spawner.mem_guarantee == 1024**3  # the chart's default, "1G"
    assert spawner.mem_limit == 1024**3  # EGISpawner's 1G: the chart has no memory.limit
    assert spawner.cpu_guarantee == pytest.approx(0.02)  # EGISpawner's: the chart has none
    assert spawner.cmd == ["jupyterhub-singleuser"] and spawner.uid == 1000
    assert spawner.default_url == "/lab" and spawner.scheduler_name == "user-scheduler"


async def test_docs_values_set_the_resources_they_document(monkeypatch, cluster):
    values = docs_values()
    _, c = applied(values, monkeypatch)
    spawner = spawner_with(c)
    memory, cpu = values["singleuser"]["memory"], values["singleuser"]["cpu"]
    assert (memory["guarantee"], memory["limit"]) == ("512M", "1G")
    assert spawner.mem_guarantee == 512 * 1024**2 and spawner.mem_limit == 1024**3
    assert spawner.cpu_limit == cpu["limit"] == 2
    assert spawner.cpu_guarantee == pytest.approx(cpu["guarantee"])
    # the profiles set the rest per flavour (the default one is what the rehearsal checks)
    (small,) = [p for p in spawner.profile_list.configured if p.get("default")]
    assert small["kubespawner_override"]["mem_guarantee"] == "1G"
