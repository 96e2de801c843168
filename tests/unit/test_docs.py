"""The documentation site builds without warnings, and its generated reference is complete.

Also checks the deployment files the docs ship: every Kubernetes manifest against the
Kubernetes schema, ``values.yaml`` for YAML syntax and for its Python snippets compiling, and
the hub image recipe (its base image and the pins it installs with) against pyproject.toml.
"""

from __future__ import annotations

import configparser
import html
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from egi_notebooks.auth import EGICheckinAuthenticator
from egi_notebooks.spawner import EGISpawner
from tests.harness.hub_image import (
    CONSTRAINTS,
    DOCKERFILE,
    ROOT,
    constraints_image,
    dockerfile_bases,
    pins,
)

DOCS = ROOT / "docs"
DEPLOY = DOCS / "deploy"
#: every Kubernetes manifest the docs ship, validated document by document
MANIFESTS = ["rbac.yaml", "rbac-migrate-claims.yaml", "apel-ssm-cronjob.yaml"]
#: the oldest Kubernetes zero-to-jupyterhub 4.x supports (its kubeVersion), and the newest
#: the validator knows (it raises a bare IndexError for a version it has no schema of)
K8S_VERSIONS = ["1.28.0", "latest"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs-html")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
         str(DOCS), str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def documented(page: Path) -> set[str]:
    """Names of the configtrait entries on a generated page (their anchors)."""
    return set(re.findall(r'id="configtrait-([^"]+)"', html.unescape(page.read_text())))


def test_every_authenticator_trait_is_in_the_reference(site):
    found = documented(site / "reference" / "authenticator.html")
    expected = {
        f"EGICheckinAuthenticator.{n}" for n in EGICheckinAuthenticator.class_traits(config=True)
    }
    assert expected - found == set()
    text = (site / "reference" / "authenticator.html").read_text()
    # help and default of one of ours, as a reader sees them
    assert "VO names whose members (any group, any role) may log in." in text
    assert "aai.egi.eu" in text


def test_every_spawner_trait_is_in_the_reference(site):
    found = documented(site / "reference" / "spawner.html")
    expected = {f"EGISpawner.{n}" for n in EGISpawner.class_traits(config=True)}
    assert expected - found == set()


def test_pages_are_linked(site):
    for page in [
        "index", "installation", "architecture", "deploy/zero-to-jupyterhub", "deploy/image",
        "deploy/rbac", "deploy/accounting", "howto/migration", "howto/vo-authorization",
        "howto/tokens", "howto/monitoring", "howto/accounting", "reference/services",
    ]:  # fmt: skip
        assert (site / f"{page}.html").exists(), page
    assert (site / "_images" / "architecture.svg").exists() or (
        site / "_static" / "architecture.svg"
    ).exists()


def manifests(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid_kubernetes(name):
    documents = manifests(name)
    assert documents
    for version in K8S_VERSIONS:
        version = kubernetes_validate.latest_version() if version == "latest" else version
        for document in documents:
            kubernetes_validate.validate(document, version, strict=True)


def test_a_typo_in_a_manifest_fails_validation():
    # the check above would be worthless if strict validation let unknown fields through
    cronjob = next(d for d in manifests("apel-ssm-cronjob.yaml") if d["kind"] == "CronJob")
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cronjob, K8S_VERSIONS[0], strict=True)


HUB_SERVICE_ACCOUNT = [{"kind": "ServiceAccount", "name": "hub"}]


def rules(role: dict) -> dict[str, set[str]]:
    return {resource: set(r["verbs"]) for r in role["rules"] for resource in r["resources"]}


def binding_for(documents: list[dict], role: dict) -> dict:
    (binding,) = [d for d in documents if d["kind"] == "RoleBinding"
                  and d["roleRef"]["name"] == role["metadata"]["name"]]  # fmt: skip
    assert binding["roleRef"]["kind"] == "Role"
    return binding


def test_rbac_yaml_grants_what_the_chart_lacks_and_no_patch():
    documents = manifests("rbac.yaml")
    assert {d["kind"] for d in documents} == {"Role", "RoleBinding"}
    (hub_role,) = [d for d in documents if d["kind"] == "Role"]
    verbs = rules(hub_role)
    # the token Secret is replaced at every refresh: PUT needs "update"
    assert "update" in verbs["secrets"]
    # only the one-off migration patches claims, with its own Role
    assert all("patch" not in v for v in verbs.values())
    # z2jh's hub service account (chart defaults), in the RoleBinding's own namespace
    assert binding_for(documents, hub_role)["subjects"] == HUB_SERVICE_ACCOUNT


def test_migrate_claims_role_is_exactly_list_and_patch_on_claims():
    documents = manifests("rbac-migrate-claims.yaml")
    (role,) = [d for d in documents if d["kind"] == "Role"]
    assert rules(role) == {"persistentvolumeclaims": {"list", "patch"}}
    assert binding_for(documents, role)["subjects"] == HUB_SERVICE_ACCOUNT


def test_apel_cronjob_reads_the_queue_the_documented_hub_mount_writes():
    documents = {d["kind"]: d for d in manifests("apel-ssm-cronjob.yaml")}
    claim, config, cronjob = (documents[k] for k in ("PersistentVolumeClaim", "ConfigMap",
                                                     "CronJob"))  # fmt: skip
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    sender = configparser.ConfigParser()
    sender.read_string(config["data"]["sender.cfg"])
    assert sender["sender"]["protocol"] == "AMS"
    assert sender["messaging"]["path_type"] == "dirq"
    assert sender["messaging"]["destination"] == "eu-egi-cloud-accounting"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert container["command"] == ["ssmsend"]  # its default config path is /etc/apel/sender.cfg
    assert volumes["config"]["configMap"]["name"] == config["metadata"]["name"]
    assert mounts["config"] == "/etc/apel"
    assert volumes["spool"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    # the hub mounts the claim at /srv/apel and writes --spool-dir=/srv/apel/outgoing
    # (docs/deploy/accounting.md): ssmsend's path is the same directory of the claim
    assert sender["messaging"]["path"] == mounts["spool"] + "/outgoing"
    page = (DEPLOY / "accounting.md").read_text()
    assert "mountPath: /srv/apel\n" in page and "--spool-dir=/srv/apel/outgoing" in page
    # the host certificate files sender.cfg names are the Secret's items
    hostcert = volumes["hostcert"]["secret"]
    files = {f"{mounts['hostcert']}/{i['path']}" for i in hostcert["items"]}
    assert {sender["certificates"]["certificate"], sender["certificates"]["key"]} == files
    # the hub's uid/gid (z2jh), so that it may lock and remove the hub's queue files
    context = pod["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (1000, 1000)


def test_hub_image_from_tags_match_the_constraints_file():
    image = constraints_image()
    bases = dockerfile_bases()
    assert bases and set(bases) == {image}, (bases, image)
    assert image.startswith("quay.io/jupyterhub/k8s-hub:")
    # the Dockerfile installs with that very file
    assert "docker/hub/constraints.txt" in DOCKERFILE.read_text()
    assert CONSTRAINTS.name == "constraints.txt"


def test_hub_image_pins_satisfy_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    frozen = pins()
    wanted = [Requirement(r) for r in
              project["dependencies"] + project["optional-dependencies"]["accounting"]]  # fmt: skip
    checked = set()
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        if name in frozen:
            assert requirement.specifier.contains(frozen[name]), (str(requirement), frozen[name])
            checked.add(name)
    # the three the package is built on must be in the image, not left to pip
    assert {"jupyterhub", "oauthenticator", "jupyterhub-kubespawner"} <= checked


def test_values_yaml_parses_and_its_python_compiles():
    values = yaml.safe_load((DOCS / "deploy" / "values.yaml").read_text())
    config = values["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "egicheckin"
    assert config["JupyterHub"]["spawner_class"] == "egi-kubespawner"
    assert config["CryptKeeper"]["keys"]
    for name, snippet in values["hub"]["extraConfig"].items():
        compile(snippet, f"hub.extraConfig.{name}", "exec")
    # every trait set under hub.config exists on its class (a typo would be ignored by the hub)
    for cls in (EGICheckinAuthenticator, EGISpawner):
        unknown = set(config[cls.__name__]) - set(cls.class_traits(config=True))
        assert not unknown, (cls.__name__, unknown)
