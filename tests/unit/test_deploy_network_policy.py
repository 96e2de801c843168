"""The pods of docs/deploy/ that call the hub API get through the hub's NetworkPolicy.

z2jh's hub NetworkPolicy admits, besides what ``hub.networkPolicy.ingress`` adds, only pods of
the hub's namespace labelled ``hub.jupyter.org/network-access-hub: "true"``. A pod without the
label cannot reach the hub API: the backup job would find no users every night.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.unit.test_docs import DEPLOY, K8S_VERSIONS
from tests.unit.test_z2jh_values import docs_values

# The ingress rule the chart always renders, zero-to-jupyterhub-k8s 4.4.0,
# jupyterhub/templates/hub/netpol.yaml ("allowed pods (hub.jupyter.org/network-access-hub) -->
# hub"), with jupyterhub/values.yaml's defaults hub.networkPolicy.allowedIngressPorts: [] (no
# port open to all) and interNamespaceAccessLabels: ignore (the hub's namespace only). Port
# "http" is the hub container's 8081 (templates/hub/deployment.yaml), the hub Service's
# targetPort for its port 8081 (templates/hub/service.yaml).
CHART_VERSION = "4.4.0"
CHART_HUB_INGRESS: list[dict[str, Any]] = [
    {
        "ports": [{"port": "http"}],
        "from": [{"podSelector": {"matchLabels": {"hub.jupyter.org/network-access-hub": "true"}}}],
    }
]
HUB_CONTAINER_PORTS = {"http": 8081}
HUB_SERVICE_PORTS = {8081: "http"}  # the hub Service: port -> the pod's targetPort
HUB_SERVICE = "hub"

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# A hub URL in a pod's command, args or environment: http://hub:8081/..., also hub.<namespace>
HUB_URL = re.compile(rf"https?://{HUB_SERVICE}(?:\.[a-z0-9.-]+)?(?::(\d+))?(?:/|$)")
# A hub API token handed to a pod: an option or a Secret key naming it
HUB_TOKEN = re.compile(r"api_token|hub-api-token|JUPYTERHUB_API_TOKEN", re.IGNORECASE)


def hub_network_policy() -> dict[str, Any]:
    """The hub's NetworkPolicy as the chart renders it with docs/deploy/values.yaml."""
    values = docs_values()
    network_policy = values["hub"].get("networkPolicy") or {}
    assert network_policy.get("enabled", True), "the docs' values turn the hub policy off"
    assert not network_policy.get("allowedIngressPorts"), "update CHART_HUB_INGRESS"
    assert network_policy.get("interNamespaceAccessLabels", "ignore") == "ignore"
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "hub"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "jupyterhub", "component": "hub"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": CHART_HUB_INGRESS + list(network_policy.get("ingress") or []),
        },
    }


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    unsupported = set(selector) - {"matchLabels"}
    assert not unsupported, f"selector keys this check does not evaluate: {unsupported}"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def admits(policy: Mapping[str, Any], labels: Mapping[str, str], port: int) -> bool:
    """Whether ``policy`` lets a pod of the policy's namespace with ``labels`` reach the hub
    pod's ``port`` (Kubernetes' rules: any rule admits; a rule without ports or without
    sources matches all of them; a source must select the pod)."""
    for rule in policy["spec"].get("ingress") or []:
        ports = rule.get("ports")
        if ports and not any(
            HUB_CONTAINER_PORTS.get(p.get("port"), p.get("port")) == port for p in ports
        ):
            continue
        sources = rule.get("from")
        if not sources:
            return True
        for source in sources:
            if "ipBlock" in source or "namespaceSelector" in source:
                continue  # not how a pod of the hub's namespace is admitted
            if _selects(source.get("podSelector") or {}, labels):
                return True
    return False


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod template) of every workload in docs/deploy/*.yaml."""
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "values.yaml":
            continue  # the chart's values, not a manifest
        for document in yaml.safe_load_all(path.read_text()):
            if not document:
                continue
            kind, name = document["kind"], document["metadata"]["name"]
            if kind == "Pod":
                yield f"{path.name} {kind}/{name}", document
            elif kind == "CronJob":
                yield (
                    f"{path.name} {kind}/{name}",
                    document["spec"]["jobTemplate"]["spec"]["template"],
                )
            elif kind in POD_TEMPLATE_KINDS:
                yield f"{path.name} {kind}/{name}", document["spec"]["template"]


def hub_ports_called(template: Mapping[str, Any]) -> set[int]:
    """The hub pod's ports a pod template calls the hub API on: from the hub URLs in its
    containers, 8081 for a hub API token with no URL."""
    spec = template["spec"]
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    texts = [s for c in containers for s in _strings(
        {k: c.get(k) for k in ("command", "args", "env")}
    )]  # fmt: skip
    ports = set()
    for text in texts:
        for match in HUB_URL.finditer(text):
            service_port = int(match.group(1) or 80)
            target = HUB_SERVICE_PORTS.get(service_port, service_port)
            ports.add(HUB_CONTAINER_PORTS.get(target, target))
    secret_keys = [
        item.get("key", "") for v in spec.get("volumes") or []
        for item in (v.get("secret") or {}).get("items") or []
    ]  # fmt: skip
    if not ports and any(HUB_TOKEN.search(t) for t in texts + secret_keys):
        ports.add(HUB_CONTAINER_PORTS["http"])
    return ports


HUB_CALLERS = [(where, t) for where, t in pod_templates() if hub_ports_called(t)]


def test_the_hub_policy_as_rendered_is_valid_kubernetes():
    for version in K8S_VERSIONS:
        version = kubernetes_validate.latest_version() if version == "latest" else version
        kubernetes_validate.validate(hub_network_policy(), version, strict=True)


def test_the_check_knows_the_pods_that_call_the_hub():
    callers = {where for where, _ in HUB_CALLERS}
    assert "backup-cronjob.yaml CronJob/egi-notebooks-backup" in callers
    # ssmsend reads the accounting queue on a claim, never the hub: it gets no access
    assert not any(where.startswith("apel-ssm-cronjob.yaml") for where in callers)


def test_the_check_refuses_an_unlabelled_pod():
    policy = hub_network_policy()
    assert not admits(policy, {"app.kubernetes.io/component": "backup"}, 8081)
    assert admits(policy, {"hub.jupyter.org/network-access-hub": "true"}, 8081)
    assert not admits(policy, {"hub.jupyter.org/network-access-hub": "false"}, 8081)
    # the docs' extra rule lets the proxy reach the services' ports, not the hub API
    assert admits(policy, {"component": "proxy"}, 10101)
    assert not admits(policy, {"component": "proxy"}, 8081)


@pytest.mark.parametrize("where,template", HUB_CALLERS, ids=[w for w, _ in HUB_CALLERS])
def test_pods_that_call_the_hub_api_pass_the_chart_hub_policy(where, template):
    policy = hub_network_policy()
    labels = (template.get("metadata") or {}).get("labels") or {}
    for port in sorted(hub_ports_called(template)):
        assert admits(policy, labels, port), (
            f"{where}: z2jh {CHART_VERSION}'s hub NetworkPolicy refuses its pods "
            f"(labels {labels}) on the hub's port {port}"
        )
