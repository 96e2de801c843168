"""`egi-notebooks migrate-claims` as an operator runs it, against the emulator process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from egi_notebooks.spawner import annotations as ann
from egi_notebooks.spawner.names import user_slug
from tests.harness.k8s.process import EmulatorProcess

USERS = [f"user{i}@egi.eu" for i in range(12)] + ["Ünïcode.Name@example.org"]


def claim(name, labels, annotations=None):
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": labels, "annotations": annotations or {}},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with EmulatorProcess(tmp_path_factory.mktemp("migrate")) as em:
        legacy = {"component": "singleuser-storage"}
        for i, username in enumerate(USERS):  # the older spawner's random names
            em.post(
                "persistentvolumeclaims",
                "jhub",
                claim(f"{i:02d}f3a9c1", legacy, {ann.USERNAME: username}),
            )
        em.post("persistentvolumeclaims", "jhub", claim("orphan", legacy))  # no annotation
        em.post(
            "persistentvolumeclaims",
            "jhub",
            claim("vo-data", {"app": "x"}, {ann.USERNAME: "user0@egi.eu"}),
        )  # not a home claim: never touched
        em.post(
            "persistentvolumeclaims",
            "other",
            claim("elsewhere", legacy, {ann.USERNAME: "user0@egi.eu"}),
        )
        yield em


def cli(em, *args):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "egi_notebooks.cli",
            "migrate-claims",
            "--kubeconfig",
            str(em.kubeconfig),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_here(capsys, em_or_path, *args):
    """The same command in this process (skips ~3 s of kubernetes_asyncio import)."""
    from egi_notebooks.cli import main

    path = getattr(em_or_path, "kubeconfig", em_or_path)
    code = main(["migrate-claims", "--kubeconfig", str(path), *args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess([], code, out.out, out.err)


def labels(em, namespace="jhub"):
    return {
        c["metadata"]["name"]: (c["metadata"].get("labels") or {}).get(ann.USER_SLUG_LABEL)
        for c in em.list("persistentvolumeclaims", namespace)
    }


def test_dry_run_lists_and_changes_nothing_then_labels_every_page(emulator, capsys):
    before = labels(emulator)
    dry = cli(emulator, "--namespace", "jhub", "--dry-run", "--page-size", "5")
    assert dry.returncode == 0, dry.stderr
    assert f"would label jhub/00f3a9c1 (user {USERS[0]})" in dry.stdout
    assert dry.stdout.strip().endswith(
        f"{len(USERS)} would label, 0 already labelled, 1 without a username annotation, 0 failed"
    )
    assert labels(emulator) == before

    run = cli_here(capsys, emulator, "--namespace", "jhub", "--page-size", "5")
    assert run.returncode == 0, run.stderr
    after = labels(emulator)
    for i, username in enumerate(USERS):  # across three pages of five
        assert after[f"{i:02d}f3a9c1"] == user_slug(username)
    assert after["orphan"] is None and after["vo-data"] is None
    assert labels(emulator, "other") == {"elsewhere": None}  # another namespace untouched
    # the selector EGISpawner uses now finds the user's claim with one list call
    selector = f"{ann.USER_SLUG_LABEL}={user_slug(USERS[-1])}"
    found = emulator.list("persistentvolumeclaims", "jhub", labelSelector=selector)
    assert [c["metadata"]["name"] for c in found] == [f"{len(USERS) - 1:02d}f3a9c1"]

    again = cli_here(capsys, emulator, "--namespace", "jhub")
    assert again.returncode == 0
    assert again.stdout.strip() == (
        f"0 labelled, {len(USERS)} already labelled, 1 without a username annotation, 0 failed"
    )


def test_unusable_kubeconfig_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "kubeconfig"
    bad.write_text("not: [a kubeconfig")
    result = cli_here(capsys, bad)
    assert result.returncode == 2
    assert result.stderr.startswith("egi-notebooks migrate-claims: no usable Kubernetes")
    assert "Traceback" not in result.stderr


def test_unreachable_api_fails_clearly_after_bounded_retries(tmp_path, capsys):
    from tests.harness.hub import free_port
    from tests.harness.k8s import write_kubeconfig

    path = write_kubeconfig(f"http://127.0.0.1:{free_port()}", tmp_path / "kubeconfig")
    result = cli_here(capsys, path, "--timeout", "1")
    assert result.returncode == 1
    assert "could not be reached" in result.stderr and "after 4 attempts" in result.stderr
