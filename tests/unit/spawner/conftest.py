"""Fixtures: an emulated cluster per test and EGISpawners wired to it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.harness.k8s import reset_kubespawner, running_emulator, use_emulator

ALICE_STATE = {
    "access_token": "AT-alice-1",
    "id_token": "IDT-alice-1",
    "refresh_token": "RT-alice-SECRET",
    "expires_at": 2_000_000_000,
    "vos": ["vo.example.org", "vo.other.eu"],
    "primary_vo": "vo.example.org",
    "entitlements": [
        "urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu",
        "urn:mace:egi.eu:group:vo.example.org:role=manager#aai.egi.eu",
        "urn:mace:egi.eu:group:vo.other.eu:role=member#aai.egi.eu",
    ],
}
BOB_STATE = {
    "access_token": "AT-bob-1",
    "id_token": "IDT-bob-1",
    "refresh_token": "RT-bob-SECRET",
    "vos": ["vo.other.eu"],
    "primary_vo": "vo.other.eu",
    "entitlements": ["urn:mace:egi.eu:group:vo.other.eu:role=member#aai.egi.eu"],
}


class FakeUser:
    """What a Spawner reads from jupyterhub.user.User (the hub is not running here)."""

    def __init__(self, name: str, auth_state: dict | None = None) -> None:
        self.name = name
        self.id = abs(hash(name)) % 10_000
        self.url = f"/user/{name}/"
        self.escaped_name = name
        self.auth_state = auth_state
        self.spawners: dict = {}

    async def get_auth_state(self) -> dict | None:
        return self.auth_state


@pytest.fixture
async def cluster(tmp_path):
    async with running_emulator() as c:
        use_emulator(c.url, tmp_path)
        yield c
        await reset_kubespawner()
        assert c.k8s.validation_errors == []


@pytest.fixture
def make_spawner(cluster):
    from egi_notebooks.spawner import EGISpawner

    users: dict[str, FakeUser] = {}  # one user object per name, holding all its spawners

    def make(name="alice", auth_state=ALICE_STATE, server="", cls=EGISpawner, **config):
        user = users.setdefault(name, FakeUser(name, auth_state))
        user.auth_state = auth_state
        config.setdefault("namespace", "hub")
        # generous: on a busy machine an emulator answer can take seconds; the tests of slow
        # APIs set their own short timeouts
        config.setdefault("start_timeout", 120)
        config.setdefault("k8s_api_request_timeout", 30)
        if cls is EGISpawner:
            config.setdefault("k8s_api_backoff", 0.01)
        orm = SimpleNamespace(name=server, server=None, user_options={})
        spawner = cls(_mock=True, user=user, orm_spawner=orm, **config)
        user.spawners[server] = spawner
        return spawner

    return make


async def spawn(spawner, auth_state=None):
    """What jupyterhub's User.spawn does around Spawner.start."""
    state = auth_state if auth_state is not None else await spawner.user.get_auth_state()
    await spawner.run_auth_state_hook(state)
    return await spawner.start()
