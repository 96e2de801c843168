"""The hub pod's extra mounts of a values file (harness/z2jh.py ``Chart.hub_mounts``)."""

from __future__ import annotations

import pytest
import yaml

from tests.harness.hub import ROOT
from tests.harness.z2jh import Chart, HubMount, UnsupportedValues

from .test_z2jh_values import docs_values

APEL_MANIFEST = ROOT / "docs" / "deploy" / "apel-ssm-cronjob.yaml"


def test_docs_values_mount_the_apel_claim_the_cronjob_reads():
    (mount,) = Chart(docs_values()).hub_mounts()
    (claim,) = [d for d in yaml.safe_load_all(APEL_MANIFEST.read_text())
                if d["kind"] == "PersistentVolumeClaim"]  # fmt: skip
    assert mount == HubMount("/srv/apel", claim["metadata"]["name"])


def hub(volumes, mounts) -> Chart:
    return Chart({"hub": {"extraVolumes": volumes, "extraVolumeMounts": mounts}})


CLAIM = {"name": "v", "persistentVolumeClaim": {"claimName": "c"}}


def test_mounts_parents_first_with_sub_path_and_read_only():
    mounts = hub([CLAIM], [
        {"name": "v", "mountPath": "/srv/a/b/", "subPath": "x", "readOnly": True},
        {"name": "v", "mountPath": "/srv/a"},
    ]).hub_mounts()  # fmt: skip
    assert mounts == [HubMount("/srv/a", "c"), HubMount("/srv/a/b", "c", "x", True)]


@pytest.mark.parametrize(
    "volumes, mounts, error",
    [
        ([{"name": "v", "secret": {"secretName": "s"}}], [{"name": "v", "mountPath": "/x"}],
         UnsupportedValues),
        ([CLAIM], [{"name": "w", "mountPath": "/srv/a"}], ValueError),
        ([CLAIM], [{"name": "v", "mountPath": "srv/a"}], ValueError),
        ([CLAIM], [{"name": "v", "mountPath": "/srv/a", "mountPropagation": "x"}],
         UnsupportedValues),
        ({"v": CLAIM}, [], ValueError),
    ],
)  # fmt: skip
def test_what_cannot_be_mounted_fails_loudly(volumes, mounts, error):
    with pytest.raises(error):
        hub(volumes, mounts).hub_mounts()
