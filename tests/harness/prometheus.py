"""A real Prometheus (Debian package) scraping a small exporter of cAdvisor-like series.

``CadvisorExporter.series`` maps a label set to a value; tests change values while Prometheus
scrapes every ``scrape_interval`` seconds.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from egi_notebooks.demo.processes import ChildProcess

from .hub import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class CadvisorExporter:
    def __init__(self) -> None:
        self.series: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def set(self, metric: str, value: float, **labels: str) -> None:
        with self.lock:
            self.series[(metric, tuple(sorted(labels.items())))] = value

    def render(self) -> str:
        lines = []
        with self.lock:
            for (metric, labels), value in sorted(self.series.items()):
                text = ",".join(f'{k}="{v}"' for k, v in labels)
                lines.append(f"{metric}{{{text}}} {value}" if text else f"{metric} {value}")
        return "\n".join(lines) + "\n"

    def start(self) -> CadvisorExporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class PrometheusServer:
    def __init__(self, targets: list[str], scrape_interval: str = "1s") -> None:
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="egi-prom-"))
        self.config = self.tmp / "prometheus.yml"
        self.config.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            "scrape_configs:\n"
            "  - job_name: cadvisor\n"
            "    honor_labels: true\n"
            f"    static_configs: [{{targets: {targets!r}}}]\n"
        )
        self.child: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> PrometheusServer:
        self.child = ChildProcess(
            "prometheus",
            [
                PROMETHEUS,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],  # fmt: skip
            self.tmp / "prometheus.log",
        ).start()
        try:
            self.child.wait_http(f"{self.url}/-/ready", timeout)
        except BaseException:
            self.child.stop()
            raise
        return self

    def stop(self, remove: bool = True) -> None:
        if self.child is not None:
            self.child.stop(10)
            self.child = None
        if remove:
            shutil.rmtree(self.tmp, ignore_errors=True)


def prometheus_or_skip(targets: list[str]) -> PrometheusServer:
    from tests.harness.missing import missing

    if not Path(PROMETHEUS).exists():
        missing("Prometheus is needed: Debian package prometheus is not installed")
    return PrometheusServer(targets).start()
