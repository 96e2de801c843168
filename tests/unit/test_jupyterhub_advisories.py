"""No JupyterHub with a known advisory that touches this package is required, shipped or tested.

Three JupyterHub advisories hit what egi-notebooks uses: user sharing (share links), renaming
users (``migrate-users``) and filtered admin roles (``restrict_admin_role``, the status
service's role). The hub image (``docker/hub/``), the package's requirement and the suite's
5.5 line must all be past them. ``./run test``'s audit stage looks for advisories of every
pinned package (pip-audit); this test holds for these three even where the vulnerability
service cannot be reached.
"""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.harness.hub_image import ROOT, base_pins, dockerfile_named_packages, pins, upgraded

#: advisory -> the JupyterHub versions it affects
ADVISORIES = {
    "GHSA-c4gm-pwx9-9w8j": SpecifierSet("<5.5.1"),  # XSS through share links (sharing on)
    "GHSA-mj6q-mp44-53v8": SpecifierSet("<5.5.2"),  # share scopes kept after a user rename
    "GHSA-69wv-m5fw-2fhp": SpecifierSet("<=5.5.0"),  # filtered admin roles
}
#: releases of the 5 line before the fixes (all of the affected ones the requirement admitted)
AFFECTED_RELEASES = ["5.0.0", "5.2.1", "5.4.6", "5.5.0", "5.5.1"]


def advisories_of(version: str) -> list[str]:
    return [name for name, affected in ADVISORIES.items() if affected.contains(version)]


def test_the_affected_ranges_are_read_as_published():
    assert advisories_of("5.5.0") == list(ADVISORIES)
    assert advisories_of("5.5.1") == ["GHSA-mj6q-mp44-53v8"]
    assert advisories_of("5.5.2") == []


def test_the_hub_image_installs_a_jupyterhub_without_the_advisories():
    assert advisories_of(pins()["jupyterhub"]) == []
    # over the base image's own JupyterHub, which has them
    assert advisories_of(base_pins()["jupyterhub"]) != []
    assert Version(pins()["jupyterhub"]) > Version(base_pins()["jupyterhub"])
    # the install step names it: pip replaces the base image's version with the pinned one
    assert "jupyterhub" in upgraded()
    assert set(upgraded()) <= dockerfile_named_packages()


def test_the_package_requires_a_jupyterhub_without_the_advisories():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (requirement,) = [
        Requirement(r) for r in project["dependencies"] if Requirement(r).name == "jupyterhub"
    ]
    admitted = [v for v in AFFECTED_RELEASES if requirement.specifier.contains(v)]
    assert admitted == [], f"{requirement} admits {admitted}"


def test_the_suites_5_5_line_is_past_them():
    # what ./run test installs in the 5.5 venv: the tests run against a fixed JupyterHub
    (version,) = re.findall(r"^JH55_VERSION=(\S+)$", (ROOT / "run").read_text(), re.MULTILINE)
    assert Version(version) >= Version("5.5.2") and Version(version).release[:2] == (5, 5)
    assert advisories_of(version) == []
