"""The per-user Secret that delivers the current access token (and id token) to pods.

The Secret holds ``access_token`` and ``id_token`` only: the refresh token never leaves
the hub. It is written before the pod is created, rewritten whenever the hub refreshes the
user and deleted with the user; while the server is shared it holds empty files
(:mod:`.sharing`). This module owns building, writing and deleting it; the
spawner decides when and with which name, labels and tokens (which of a user's servers a
refresh concerns: ``spawner.update_user_token_secrets``). Writing is a replace (PUT) first,
so a steady-state spawn costs one call; a missing Secret is then created.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio.client import V1ObjectMeta, V1Secret

from .k8s_calls import KubernetesTrouble, RetryPolicy, call, gone_is_done

TOKEN_KEYS = ("access_token", "id_token")


def token_data(auth_state: Mapping[str, Any] | None) -> dict[str, str]:
    """base64 Secret data for the tokens the pod may see; nothing else from auth_state."""
    auth_state = auth_state or {}
    return {
        key: base64.b64encode(str(auth_state[key]).encode()).decode()
        for key in TOKEN_KEYS
        if auth_state.get(key)
    }


def blank_data() -> dict[str, str]:
    """Secret data with every token file present and empty: what a shared server gets (a
    notebook reading the file finds no token rather than a missing file)."""
    return dict.fromkeys(TOKEN_KEYS, "")


def access_token_in(data: Mapping[str, str]) -> str | None:
    """The access token held by Secret ``data`` (:func:`token_data`), if any."""
    value = data.get("access_token")
    return base64.b64decode(value).decode() if value else None


def secret_manifest(
    name: str, data: dict[str, str], labels: dict[str, str], annotations: dict[str, str]
) -> V1Secret:
    return V1Secret(
        api_version="v1",
        kind="Secret",
        type="Opaque",
        metadata=V1ObjectMeta(name=name, labels=labels, annotations=annotations),
        data=data,
    )


async def write_token_secret(
    api: Any,
    namespace: str,
    name: str,
    tokens: dict[str, str],
    labels: dict[str, str],
    annotations: dict[str, str],
    policy: RetryPolicy,
    log: Any,
) -> bool:
    """Build the Secret ``name`` holding ``tokens`` (:func:`token_data`) and write it.

    True when this call created it (a spawn that fails later deletes what it created).
    """
    manifest = secret_manifest(name, tokens, labels, annotations)
    return await write_secret(api, namespace, manifest, policy, log)


async def write_secret(
    api: Any, namespace: str, manifest: V1Secret, policy: RetryPolicy, log: Any
) -> bool:
    """Replace the Secret, creating it if missing; True when this call created it."""
    name = manifest.metadata.name
    for _ in range(policy.attempts):
        replaced = await call(
            lambda: api.replace_namespaced_secret(name, namespace, manifest),
            f"store your access token (Secret {name})",
            policy,
            log,
            accept=lambda exc: None if exc.status == 404 else NotImplemented,
        )
        if replaced is not None:
            return False
        created = await call(
            lambda: api.create_namespaced_secret(namespace, manifest),
            f"store your access token (Secret {name})",
            policy,
            log,
            # 409: created concurrently (another server of the user): replace it instead.
            accept=lambda exc: None if exc.status == 409 else NotImplemented,
        )
        if created is not None:
            return True
    raise KubernetesTrouble(
        f"Could not store your access token (Secret {name}): it keeps changing."
    )


async def delete_token_secret(
    api: Any, namespace: str, name: str, policy: RetryPolicy, log: Any
) -> None:
    """Delete the Secret ``name``; one already gone counts as deleted."""
    await call(
        lambda: api.delete_namespaced_secret(name, namespace),
        f"delete the token Secret {name}",
        policy,
        log,
        accept=gone_is_done,
    )
