"""``egi-notebooks migrate-claims``: label the older egi-notebooks-hub claims once.

The older spawner gave home claims random names and only a ``hub.jupyter.org/username``
annotation, which no label selector can match. This command adds the ``egi.eu/user`` label
(:func:`egi_notebooks.spawner.storage.label_legacy_claims`) so that EGISpawner adopts each
claim with one selector lookup instead of scanning the namespace at every first spawn::

    egi-notebooks migrate-claims --namespace jhub --dry-run   # what would change
    egi-notebooks migrate-claims --namespace jhub

Credentials come from ``--kubeconfig``, else in-cluster (a pod's service account), else
``KUBECONFIG`` / ``~/.kube/config``. It only adds a label: running it twice is harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cli import HelpFormatter

if TYPE_CHECKING:  # the Kubernetes client loads in seconds: only a run needs it
    from .storage import LabelReport

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
log = logging.getLogger(__name__)


class ConfigError(Exception):
    """No usable Kubernetes credentials: said in one line, exit status 2."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="egi-notebooks migrate-claims",
        formatter_class=HelpFormatter,
        description="Label claims of the older egi-notebooks-hub spawner for EGISpawner.",
    )
    parser.add_argument(
        "--namespace",
        help="namespace of the hub's claims (default: the kubeconfig context's, in-cluster "
        "the pod's own, else 'default')",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be labelled")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, KUBECONFIG)")
    parser.add_argument("--page-size", type=int, default=500, help="claims per list call")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per API call")
    return parser.parse_args(argv)


def pod_namespace() -> str | None:
    """The namespace of the pod this runs in (its service account's), if any."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


async def api_client(kubeconfig: str | None) -> tuple[Any, str | None]:
    """(ApiClient, namespace of the configuration or None)."""
    import yaml
    from kubernetes_asyncio import client, config

    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config()
            return client.ApiClient(), pod_namespace()
        except config.ConfigException:
            pass  # not really in a pod: fall back to a kubeconfig
    path = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        _, active = config.list_kube_config_contexts(config_file=path)
        api = await config.new_client_from_config(config_file=path)
    except (
        config.ConfigException,
        yaml.YAMLError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
    ) as exc:
        where = path or "~/.kube/config"
        raise ConfigError(f"no usable Kubernetes configuration ({where}): {exc}") from None
    return api, ((active or {}).get("context") or {}).get("namespace")


def print_report(report: LabelReport, namespace: str, dry_run: bool) -> None:
    verb = "would label" if dry_run else "labelled"
    for claim, username in report.labelled:
        print(f"{verb} {namespace}/{claim} (user {username})")
    for claim, error in report.failed:
        print(f"FAILED {namespace}/{claim}: {error}", file=sys.stderr)
    print(
        f"{len(report.labelled)} {verb}, {report.already} already labelled, "
        f"{report.skipped} without a username annotation, {len(report.failed)} failed"
    )


async def run(args: argparse.Namespace) -> int:
    from kubernetes_asyncio.client import CoreV1Api

    from .k8s_calls import RetryPolicy
    from .storage import label_legacy_claims

    api_client_, config_namespace = await api_client(args.kubeconfig)
    namespace = args.namespace or config_namespace or "default"
    policy = RetryPolicy(timeout=args.timeout)
    async with api_client_ as raw:
        report = await label_legacy_claims(
            CoreV1Api(raw),
            namespace,
            page_size=args.page_size,
            dry_run=args.dry_run,
            policy=policy,
            log=log,
        )
    print_report(report, namespace, args.dry_run)
    return 1 if report.failed else 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("kubernetes_asyncio").setLevel(logging.ERROR)  # we say it in one line
    if args.page_size < 1:
        print("egi-notebooks migrate-claims: --page-size must be at least 1", file=sys.stderr)
        return 2
    from .k8s_calls import KubernetesTrouble

    try:
        return asyncio.run(run(args))
    except ConfigError as exc:
        print(f"egi-notebooks migrate-claims: {exc}", file=sys.stderr)
        return 2
    except KubernetesTrouble as exc:
        print(f"egi-notebooks migrate-claims: {exc}", file=sys.stderr)
        return 1
