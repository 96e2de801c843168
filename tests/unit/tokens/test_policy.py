"""Who may fetch whose access token, from the identity model ``GET /hub/api/user`` returns."""

from __future__ import annotations

import pytest

from egi_notebooks.services.tokens import TOKEN_SCOPE
from egi_notebooks.services.tokens.policy import Grant, Refused, grant_for

ALICE = "alice@egi.eu"


def identity(*scopes: str, name: str = ALICE, kind: str = "user") -> dict:
    return {"kind": kind, "name": name, "scopes": list(scopes), "token_id": "a1"}


def test_a_server_scope_is_only_a_candidate_the_hub_must_confirm():
    # what JupyterHub gives a server, but also what a user can mint for a server that does
    # not exist, or an admin for any user: the hub confirms it is the server's own token
    for server in ("", "lab", "nonexistent"):
        grant = grant_for(identity(f"access:servers!server={ALICE}/{server}"))
        assert grant == Grant(ALICE, server_token=True)


def test_the_custom_scope_needs_no_server():
    assert grant_for(identity(f"{TOKEN_SCOPE}!user={ALICE}")) == Grant(ALICE, False)
    assert grant_for(identity(TOKEN_SCOPE)) == Grant(ALICE, False)
    both = identity(TOKEN_SCOPE, f"access:servers!server={ALICE}/")
    assert grant_for(both) == Grant(ALICE, False)


@pytest.mark.parametrize(
    "model",
    [
        identity(f"read:users:name!user={ALICE}"),
        identity(f"access:servers!user={ALICE}"),  # not one server's token
        identity(f"access:servers!server={ALICE}/", name="bob@egi.eu"),  # sharing
        identity(f"access:servers!server={ALICE}x/"),  # another user whose name starts alike
        identity(f"{TOKEN_SCOPE}!user=bob@egi.eu"),
        identity(TOKEN_SCOPE, kind="service", name="tokens"),
        {"kind": "user", "scopes": [TOKEN_SCOPE]},
    ],
)
def test_refused(model):
    with pytest.raises(Refused):
        grant_for(model)


def test_only_for_the_owner():
    with pytest.raises(Refused):
        grant_for(identity(TOKEN_SCOPE), requested_user="bob@egi.eu")
    assert grant_for(identity(TOKEN_SCOPE), requested_user=ALICE).owner == ALICE
