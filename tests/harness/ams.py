"""A local ARGO Messaging Service (publish endpoint only) with injected failures.

``plan`` is consumed one entry per publish request: ``"ok"``, ``"500"``, ``"garbage"`` (HTTP
200 with a body that is not an AMS answer), ``"stored-garbage"`` (the message IS stored, the
answer is garbage: the sender cannot know), ``"drop"`` (connection closed without an answer),
``"slow"`` (answers after ``slow_seconds``). When the plan is empty every request is "ok".

AMS itself stores whatever it is given; APEL's receiver, which pulls the messages, rejects any
that is not S/MIME signed by the host certificate. :meth:`AMSEmulator.received` plays that
receiver (``openssl smime -verify``) on the acknowledged messages, after the fact: verifying in
the request handler would slow the answers the timeout tests count on.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

from tests.harness.json_http import JSONHandler
from tests.harness.pki import Received, verify_like_apel


class AMSEmulator:
    def __init__(self, token: str = "ams-secret", project: str = "accounting",
                 topic: str = "eu-egi-cloud-accounting") -> None:  # fmt: skip
        self.token = token
        self.path = f"/v1/projects/{project}/topics/{topic}:publish"
        self.plan: list[str] = []
        self.slow_seconds = 2.0
        self.stored: list[dict] = []  # every message AMS kept (acknowledged or not)
        self.acked: list[dict] = []  # the ones whose id reached the sender
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> AMSEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> AMSEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def received(self, ca_file: Path, workdir: Path) -> list[Received]:
        """What APEL's receiver gets from every acknowledged message (NotVerified if any is
        not signed by a certificate of ``ca_file``)."""
        with self._lock:
            acked = list(self.acked)
        return [verify_like_apel(m["data"], ca_file, workdir) for m in acked]

    def _handler(self):
        emulator = self

        class Handler(JSONHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                with emulator._lock:
                    emulator.requests += 1
                    step = emulator.plan.pop(0) if emulator.plan else "ok"
                if self.headers.get("x-api-key") != emulator.token:
                    return self.answer(401, b'{"error": {"code": 401}}')
                if self.path != emulator.path:
                    return self.answer(404, b'{"error": {"code": 404}}')
                if step == "500":
                    return self.answer(500, b'{"error": {"code": 500}}')
                if step == "garbage":
                    return self.answer(200, b"<html>proxy error</html>")
                if step == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return None
                if step == "slow":
                    time.sleep(emulator.slow_seconds)
                messages = json.loads(raw)["messages"]
                stored = [
                    {"attributes": m.get("attributes", {}),
                     "data": base64.b64decode(m["data"]).decode()}
                    for m in messages
                ]  # fmt: skip
                with emulator._lock:
                    first = len(emulator.stored)
                    emulator.stored.extend(stored)
                    ids = [str(first + i) for i in range(len(stored))]
                if step == "stored-garbage":
                    return self.answer(200, b'{"messageIds": ')
                # recorded before the answer: the sender may read it as soon as it has the ids
                with emulator._lock:
                    emulator.acked.extend(stored)
                try:
                    self.answer(200, json.dumps({"messageIds": ids}).encode())
                except OSError:  # the sender gave up waiting: it never saw the ids
                    with emulator._lock:
                        for message in stored:
                            emulator.acked.remove(message)
                return None

        return Handler
