"""``restrict_admin_role``: the admin role without ``admin:auth_state``, and the upstream
contract it relies on (these tests fail when the installed JupyterHub changes it)."""

from __future__ import annotations

import pytest
from jupyterhub import orm, roles
from jupyterhub.scopes import expand_scopes, scope_definitions
from traitlets.config import Config

from egi_notebooks.hubconfig import (
    default_admin_scopes,
    restrict_admin_role,
    scopes_without,
)


@pytest.fixture(autouse=True)
def upstream_roles(monkeypatch):
    """Every test starts from, and leaves behind, the installed JupyterHub's function."""
    monkeypatch.setattr(roles, "get_default_roles", roles.get_default_roles)


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite://")()
    yield session
    session.close()


def admin_role() -> dict:
    (admin,) = [r for r in roles.get_default_roles() if r["name"] == "admin"]
    return admin


def test_upstream_admin_role_reads_auth_state():
    # the reason for the helper: the default admin role includes admin:auth_state
    assert "admin:auth_state" in expand_scopes(admin_role()["scopes"])
    assert "admin:auth_state" in scope_definitions["admin:users"]["subscopes"]


def test_upstream_refuses_other_admin_scopes_in_load_roles(db):
    # why the helper replaces get_default_roles instead of listing scopes in load_roles
    scopes = scopes_without(admin_role()["scopes"], frozenset({"admin:auth_state"}))
    with pytest.raises(roles.RoleValueError):
        roles.create_role(db, {"name": "admin", "scopes": scopes})


def test_restricted_admin_keeps_everything_but_auth_state():
    upstream_roles = roles.get_default_roles()
    upstream_scopes = admin_role()["scopes"]
    upstream = expand_scopes(upstream_scopes)
    restrict_admin_role(Config())
    restricted = admin_role()
    lost = upstream - expand_scopes(restricted["scopes"])
    # only admin:auth_state and what includes it (admin:users) go; every other permission
    # of the installed default stays
    assert "admin:auth_state" in lost and "admin:users" in lost
    assert all("admin:auth_state" in expand_scopes([scope]) for scope in lost), lost
    assert default_admin_scopes() == upstream_scopes

    # the other default roles stay the installed ones
    def others(defaults: list[dict]) -> list[dict]:
        return [r for r in defaults if r["name"] != "admin"]

    assert others(roles.get_default_roles()) == others(upstream_roles)


def test_hub_accepts_the_restricted_admin_role(db):
    # create_role looks get_default_roles up in its module at every call: what the hub
    # starts with (init_role_creation passes the same merged spec)
    restrict_admin_role(Config())
    role = roles.create_role(db, admin_role())
    assert "admin:auth_state" not in expand_scopes(role.scopes)


def test_restriction_is_idempotent():
    restrict_admin_role(Config())
    once = admin_role()
    restrict_admin_role(Config())
    assert admin_role() == once
    assert "admin:users" in default_admin_scopes()  # the installed defaults, not ours


def test_load_roles_may_name_admins_but_not_admin_scopes():
    c = Config()
    c.JupyterHub.load_roles = [{"name": "admin", "users": ["ops@egi.eu"]}]
    restrict_admin_role(c)
    c.JupyterHub.load_roles = [{"name": "admin", "scopes": ["admin:users"]}]
    with pytest.raises(ValueError, match="scopes of the admin role"):
        restrict_admin_role(c)


def test_scopes_without_keeps_what_the_withheld_scope_sat_beside():
    assert scopes_without(["admin:users", "users"], frozenset({"admin:auth_state"})) == [
        "users", "read:roles:users", "delete:users",
    ]  # fmt: skip
    assert scopes_without(["read:hub"], frozenset({"admin:auth_state"})) == ["read:hub"]
    assert scopes_without(["admin:auth_state"], frozenset({"admin:auth_state"})) == []
