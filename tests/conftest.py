"""Fixtures shared by the whole suite live in tests/harness/; they are registered here."""

import pytest
from jupyterhub import roles

pytest_plugins = ["tests.harness.egi_hub"]

# hubconfig.restrict_admin_role replaces this function in the process that loads a hub
# configuration; tests that load one in-process must not leave it replaced for later tests
UPSTREAM_DEFAULT_ROLES = roles.get_default_roles


@pytest.fixture(autouse=True)
def upstream_default_roles():
    roles.get_default_roles = UPSTREAM_DEFAULT_ROLES
    yield
    roles.get_default_roles = UPSTREAM_DEFAULT_ROLES
