"""A quiet JSON request handler for the small HTTP emulators in the tests (AMS, EOSC)."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


class JSONHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def answer(self, status: int, body: bytes) -> None:
        """``body`` as is (tests send broken JSON too), labelled as JSON."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
