"""A minimal async client for one kernel of a single-user server.

The kernel is started through the server's REST API (``POST api/kernels``) and code runs over
the kernel websocket (``api/kernels/<id>/channels``) with the Jupyter messaging protocol, the
way JupyterLab does it. Only what the probe needs: kernel_info, execute, shutdown.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect


class KernelError(Exception):
    """The kernel could not be started, reached, or reported an error."""


@dataclass
class ExecuteResult:
    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    error: str | None = None
    status: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)


class KernelClient:
    """One kernel on the server at ``server_url`` (ends with ``/``), reached with ``token``."""

    def __init__(
        self,
        server_url: str,
        token: str,
        kernel_name: str = "python3",
        request_timeout: float = 30,
    ) -> None:
        self.server_url = server_url if server_url.endswith("/") else server_url + "/"
        self.token = token
        self.kernel_name = kernel_name
        self.request_timeout = request_timeout
        self.kernel_id: str | None = None
        self.session = uuid.uuid4().hex
        self._ws: WebSocketClientConnection | None = None
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"token {token}"}, timeout=request_timeout
        )

    async def start(self) -> str:
        r = await self._http.post(f"{self.server_url}api/kernels", json={"name": self.kernel_name})
        if r.status_code != 201:
            raise KernelError(
                f"starting kernel {self.kernel_name!r}: HTTP {r.status_code}: {_reason(r)}"
            )
        self.kernel_id = r.json()["id"]
        return self.kernel_id

    async def connect(self) -> None:
        """Open the websocket and wait for a kernel_info reply (the kernel is alive)."""
        ws_url = (
            "ws"
            + self.server_url[len("http") :]
            + (f"api/kernels/{self.kernel_id}/channels?session_id={self.session}")
        )
        request = HTTPRequest(
            ws_url,
            headers={"Authorization": f"token {self.token}"},
            connect_timeout=self.request_timeout,
            request_timeout=self.request_timeout,
        )
        try:
            self._ws = await websocket_connect(request)
        except Exception as e:
            raise KernelError(f"kernel websocket: {e}") from e
        reply = await self._request("kernel_info_request", {}, "shell")
        if reply["content"].get("status") != "ok":
            raise KernelError(f"kernel_info: {reply['content']}")

    def _message(self, msg_type: str, content: dict[str, Any], channel: str) -> dict[str, Any]:
        return {
            "header": {
                "msg_id": uuid.uuid4().hex,
                "msg_type": msg_type,
                "username": "egi-notebooks-status",
                "session": self.session,
                "date": datetime.now(UTC).isoformat(),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        }

    async def _recv(self) -> dict[str, Any]:
        assert self._ws is not None
        raw = await self._ws.read_message()
        if raw is None:
            code, reason = self._ws.close_code, self._ws.close_reason
            raise KernelError(f"kernel websocket closed ({code} {reason or ''})".strip())
        if isinstance(raw, bytes):  # binary frames only carry buffers we never ask for
            return {"channel": None, "parent_header": {}, "header": {}, "content": {}}
        return json.loads(raw)

    async def _request(
        self, msg_type: str, content: dict[str, Any], channel: str
    ) -> dict[str, Any]:
        """Send a request; return its reply (other messages are dropped)."""
        assert self._ws is not None
        msg = self._message(msg_type, content, channel)
        await self._ws.write_message(json.dumps(msg))
        while True:
            reply = await self._recv()
            parent = reply.get("parent_header", {}).get("msg_id")
            if parent == msg["header"]["msg_id"] and reply.get("channel") == channel:
                return reply

    async def execute(self, code: str) -> ExecuteResult:
        """Run ``code``; collect its output until the kernel is idle again."""
        assert self._ws is not None
        msg = self._message(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            "shell",
        )
        msg_id = msg["header"]["msg_id"]
        await self._ws.write_message(json.dumps(msg))
        result = ExecuteResult()
        got_reply = got_idle = False
        while not (got_reply and got_idle):
            reply = await self._recv()
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            msg_type = reply.get("header", {}).get("msg_type") or reply.get("msg_type")
            content = reply.get("content", {})
            if reply.get("channel") == "shell" and msg_type == "execute_reply":
                got_reply = True
                result.status = content.get("status", "")
                if result.status == "error" and not result.error:
                    result.error = f"{content.get('ename')}: {content.get('evalue')}"
            elif msg_type == "status" and content.get("execution_state") == "idle":
                got_idle = True
            elif msg_type == "stream":
                if content.get("name") == "stderr":
                    result.stderr += content.get("text", "")
                else:
                    result.stdout += content.get("text", "")
            elif msg_type in {"execute_result", "display_data"}:
                result.result = content.get("data", {}).get("text/plain")
                result.outputs.append(content)
            elif msg_type == "error":
                result.error = f"{content.get('ename')}: {content.get('evalue')}"
        return result

    async def shutdown(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if self.kernel_id:
            r = await self._http.delete(f"{self.server_url}api/kernels/{self.kernel_id}")
            if r.status_code not in (204, 404):
                raise KernelError(f"kernel shutdown: HTTP {r.status_code}: {_reason(r)}")
            self.kernel_id = None

    async def aclose(self) -> None:
        """Release the client (never raises: used on the failure path)."""
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        await self._http.aclose()


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message") or response.text[:200])
    except ValueError:
        return response.text[:200]
