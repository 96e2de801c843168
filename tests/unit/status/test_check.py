"""``egi-notebooks check-status``: exit codes and output against a real HTTP server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from egi_notebooks.services.status.check import main
from tests.harness.hub import free_port

# Nagios plugin output: "STATUS - text" and optional " | perfdata", on one line
LINE = re.compile(r"^(OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| [^\n]+)?\n$")


class FakeStatusService:
    """Serves whatever body/status the test sets (a real socket, real HTTP)."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b""
        self.delay = 0.0
        self.paths: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.paths.append(self.path)
                time.sleep(service.delay)
                self.send_response(service.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(service.body)))
                self.end_headers()
                try:
                    self.wfile.write(service.body)
                except BrokenPipeError:  # the plugin gave up (timeout test)
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/status/"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def json(self, **body) -> None:
        self.body = json.dumps(body).encode()


@pytest.fixture
def service():
    s = FakeStatusService()
    yield s
    s.server.shutdown()
    s.server.server_close()


def run_check(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr().out
    assert LINE.match(out), out
    return code, out


@pytest.mark.parametrize(
    "status, exit_code", [("OK", 0), ("WARNING", 1), ("CRITICAL", 2), ("UNKNOWN", 3)]
)
def test_each_state_maps_to_its_exit_code(service, capsys, status, exit_code):
    service.json(
        code=status,
        msg="spawn failed: no | pipes\nhere",
        time=time.time() - 5,
        interval=3600,
        phases={"spawn": 1.234, "execute": 0.05},
        duration=2.5,
        age=5,
        thresholds={"spawn": 300},
        timeouts={"spawn": 600},
    )
    code, out = run_check(capsys, service.url)
    assert code == exit_code
    assert out.startswith(f"{status} - spawn failed: no / pipes here | ")
    assert "spawn=1.234s;300;600;0; execute=0.050s;;;0; total=2.500s;;;0; age=5s;;;0;" in out
    assert service.paths == ["/services/status/status.json"]


def test_older_service_without_phases(service, capsys):
    service.json(code="OK", msg="Notebook server started and stopped", time=time.time())
    assert run_check(capsys, service.url + "status.json") == (
        0,
        "OK - Notebook server started and stopped\n",
    )
    assert service.paths == ["/services/status/status.json"]


def test_stale_result_is_unknown_even_if_service_says_ok(service, capsys):
    service.json(code="OK", msg="fine", time=time.time() - 7300, interval=3600)
    code, out = run_check(capsys, service.url)
    assert code == 3 and out.startswith("UNKNOWN - stale result: last probe run 7300s ago")
    service.json(code="OK", msg="fine", time=time.time() - 100)
    assert run_check(capsys, service.url, "--max-age", "60")[0] == 3
    assert run_check(capsys, service.url, "--max-age", "600")[0] == 0


@pytest.mark.parametrize(
    "status, body, message",
    [
        (200, b"<html>not json</html>", "invalid JSON"),
        (200, b'["a", "list"]', "without code/msg"),
        (200, b'{"code": "MAYBE", "msg": "x"}', "unexpected status 'MAYBE'"),
        (200, b'{"code": "OK", "msg": "x", "time": "yesterday"}', "invalid time"),
        (500, b'{"code": "OK", "msg": "x"}', "HTTP 500"),
        (404, b"", "HTTP 404"),
    ],
)
def test_garbage_is_unknown(service, capsys, status, body, message):
    service.status, service.body = status, body
    code, out = run_check(capsys, service.url)
    assert code == 3 and out.startswith("UNKNOWN - ") and message in out


def test_unreachable_is_unknown(capsys):
    code, out = run_check(capsys, f"http://127.0.0.1:{free_port()}/services/status/")
    assert code == 3 and out.startswith("UNKNOWN - status service unreachable")


def test_slow_service_is_unknown_within_the_timeout(service, capsys):
    service.json(code="OK", msg="x", time=time.time())
    service.delay = 3
    start = time.monotonic()
    code, out = run_check(capsys, service.url, "--timeout", "0.5")
    assert code == 3 and "did not answer in 0.5s" in out
    assert time.monotonic() - start < 2


def test_plugin_imports_neither_jupyterhub_nor_tornado():
    code = (
        "import sys; from egi_notebooks.cli import main; "
        "rc = main(['check-status', 'http://127.0.0.1:1/']); "
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('jupyterhub', 'tornado')]; "
        "print(rc, heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    ).stdout
    assert out.splitlines()[-1] == "3 []"
