"""The backup CronJob the docs ship: valid Kubernetes, and every secret a file."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from tests.unit.test_docs import DEPLOY, K8S_VERSIONS

MANIFEST = DEPLOY / "backup-cronjob.yaml"


def documents() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_backup_cronjob_is_valid_kubernetes(version):
    version = kubernetes_validate.latest_version() if version == "latest" else version
    for document in documents():
        kubernetes_validate.validate(document, version, strict=True)


def test_backup_cronjob_takes_secrets_as_files_and_mounts_homes_read_only():
    cronjob = next(d for d in documents() if d["kind"] == "CronJob")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:2] == ["egi-notebooks", "backup"]
    for env in container.get("env", []):
        assert "valueFrom" not in env  # no secret in an environment variable
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["homes"]["readOnly"] is True and mounts["secrets"]["readOnly"] is True
    options = dict(o.split("=", 1) for o in container["command"][2:])
    assert options["--BackupApp.password_file"].startswith(mounts["secrets"]["mountPath"])
    assert options["--BackupApp.mount_root"] == mounts["homes"]["mountPath"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
