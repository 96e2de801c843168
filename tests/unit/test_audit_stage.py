"""./run test's audit stage (devtools/audit_dependencies.py, pip-audit) fails on a known advisory.

The stage asks the package index's JSON API by default. Its failure path is checked here against
a local stand-in for a vulnerability service (pip-audit's OSV client, pointed at a server on
127.0.0.1 that knows the three JupyterHub advisories of December 2026): a pin with an advisory
fails the stage and is named with its advisory and fixed release; the hub image's pins and the
test venv pass and are audited package by package, without the editable egi-notebooks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.harness.hub_image import CONSTRAINTS, ROOT, pins

SCRIPT = ROOT / "devtools" / "audit_dependencies.py"
#: package -> (advisory, first fixed release), as the advisories publish them
KNOWN = {
    "jupyterhub": [
        ("GHSA-c4gm-pwx9-9w8j", "5.5.1"),
        ("GHSA-mj6q-mp44-53v8", "5.5.2"),
        ("GHSA-69wv-m5fw-2fhp", "5.5.1"),
    ]
}


class Advisories:
    """A vulnerability service on 127.0.0.1 answering OSV's /v1/query for KNOWN."""

    def __init__(self) -> None:
        self.queried: dict[str, str] = {}
        advisories = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                name, version = query["package"]["name"], query["version"]
                advisories.queried[name] = version
                vulns = [
                    {
                        "id": advisory,
                        "summary": f"{name} before {fixed}",
                        "affected": [
                            {
                                "package": {"name": name, "ecosystem": "PyPI"},
                                "ranges": [
                                    {
                                        "type": "ECOSYSTEM",
                                        "events": [{"introduced": "0"}, {"fixed": fixed}],
                                    }
                                ],
                            }
                        ],
                    }  # fmt: skip
                    for advisory, fixed in KNOWN.get(name, [])
                    if Version(version) < Version(fixed)
                ]
                body = json.dumps({"vulns": vulns} if vulns else {}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/query"


@pytest.fixture
def service(tmp_path) -> Iterator[tuple[Advisories, list[str]]]:
    advisories = Advisories()
    thread = threading.Thread(target=advisories.server.serve_forever, daemon=True)
    thread.start()
    args = ["-s", "osv", "--osv-url", advisories.url, "--cache-dir", str(tmp_path / "cache")]
    try:
        yield advisories, args
    finally:
        advisories.server.shutdown()
        advisories.server.server_close()


def run_stage(*targets: str | Path, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, targets), "--", *args],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip


def test_a_pin_with_an_advisory_fails_the_stage_and_is_named(service, tmp_path):
    advisories, args = service
    vulnerable = tmp_path / "old-image.txt"
    vulnerable.write_text("jupyterhub==5.5.0\ntornado==6.5.7\n")
    clean = tmp_path / "clean.txt"
    clean.write_text("jupyterhub==5.5.4\n")
    result = run_stage(vulnerable, clean, args=args)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "jupyterhub==5.5.0: GHSA-69wv-m5fw-2fhp; fixed in: 5.5.1" in out
    assert "jupyterhub==5.5.0: GHSA-mj6q-mp44-53v8; fixed in: 5.5.2" in out
    assert f"audit {vulnerable}: 3 known advisories in 2 audited packages" in out
    # the next target is audited all the same
    assert f"audit {clean}: 0 known advisories in 1 audited packages" in out
    assert advisories.queried == {"jupyterhub": "5.5.4", "tornado": "6.5.7"}


def test_the_hub_images_pins_pass_and_each_is_audited(service):
    advisories, args = service
    result = run_stage(CONSTRAINTS.relative_to(ROOT), args=args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert advisories.queried == pins()  # every pin, at its pinned version
    assert "not audited" not in result.stdout.lower()


def test_a_test_venv_passes_without_the_editable_package(service):
    # the venv running these tests: one of ./run test's two
    advisories, args = service
    venv = Path(sys.prefix)
    result = run_stage(venv, args=args)
    assert result.returncode == 0, result.stdout + result.stderr
    import jupyterhub

    assert advisories.queried["jupyterhub"] == jupyterhub.__version__
    assert "pip-audit" in advisories.queried  # the stage's own tool is in the venv too
    assert canonicalize_name("egi-notebooks") not in advisories.queried


def test_a_venv_without_pip_audit_fails_clearly(tmp_path):
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    result = run_stage(venv, args=[])
    assert result.returncode == 1
    assert f"audit {venv}: pip-audit failed" in result.stdout
    assert "No module named pip_audit" in result.stdout
