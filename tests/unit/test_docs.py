"""The documentation site builds without warnings, and its generated reference is complete.

Also checks the deployment files the docs ship: ``rbac.yaml`` against the Kubernetes schema,
``values.yaml`` for YAML syntax and for its Python snippets compiling.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from egi_notebooks.auth import EGICheckinAuthenticator
from egi_notebooks.spawner import EGISpawner

DOCS = Path(__file__).resolve().parents[2] / "docs"


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
        "index", "installation", "architecture", "deploy/zero-to-jupyterhub", "deploy/rbac",
        "howto/migration", "howto/vo-authorization", "howto/tokens", "howto/monitoring",
        "howto/accounting", "reference/services",
    ]:  # fmt: skip
        assert (site / f"{page}.html").exists(), page
    assert (site / "_images" / "architecture.svg").exists() or (
        site / "_static" / "architecture.svg"
    ).exists()


def test_rbac_yaml_is_valid_kubernetes():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    documents = [d for d in yaml.safe_load_all((DOCS / "deploy" / "rbac.yaml").read_text()) if d]
    assert {d["kind"] for d in documents} == {"Role", "RoleBinding"}
    for document in documents:
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
    hub_role = next(d for d in documents if d["metadata"]["name"] == "egi-notebooks-hub"
                    and d["kind"] == "Role")  # fmt: skip
    verbs = {r["resources"][0]: set(r["verbs"]) for r in hub_role["rules"]}
    # the token Secret is replaced at every refresh: PUT needs "update"
    assert "update" in verbs["secrets"]


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
