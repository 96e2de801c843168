"""Shared base for the hub-managed services (status, accounting, tokens).

Modelled on jupyterhub-idle-culler: a small traitlets ``Application`` that reads
``JUPYTERHUB_API_URL`` / ``JUPYTERHUB_API_TOKEN`` / ``JUPYTERHUB_SERVICE_PREFIX`` /
``JUPYTERHUB_SERVICE_URL`` from the environment the hub gives its managed services, talks to
the hub REST API through :class:`HubClient` (timeouts, bounded retries, pagination), and runs
per-item work with bounded concurrency and per-item error isolation.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar, cast
from urllib.parse import urlparse

import httpx
from tornado import netutil, web
from tornado.httpserver import HTTPServer
from tornado.log import LogFormatter
from traitlets import Float, Integer, Unicode, default
from traitlets.config import Application

from ..retry import retry

T = TypeVar("T")
R = TypeVar("R")

PAGINATION_MEDIA_TYPE = "application/jupyterhub-pagination+json"
RETRY_STATUS = {502, 503, 504}
#: Environment variable for ``HubServiceApp.bind_url`` (a service's ``environment`` in the hub
#: configuration; a hub passes its own environment to managed services only for a few names).
BIND_URL_ENV = "EGI_NOTEBOOKS_SERVICE_BIND_URL"

log = logging.getLogger(__name__)


class HubAPIError(Exception):
    """The hub answered with an error (after retries where they make sense)."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status


class HubClient:
    """Async client for the hub REST API with timeouts, bounded retries and pagination."""

    def __init__(
        self,
        api_url: str,
        token: str,
        timeout: float = 30,
        max_retries: int = 3,
        backoff: float = 0.5,
        logger: logging.Logger | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.log = logger or log
        self.requests_made = 0
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"token {token}"},
            timeout=timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; retries connection errors and 502/503/504 with backoff."""
        url = f"{self.api_url}/{path.lstrip('/')}"

        async def attempt() -> httpx.Response:
            self.requests_made += 1
            return await self._client.request(method, url, **kwargs)

        try:
            return await retry(
                attempt,
                attempts=self.max_retries + 1,
                backoff=self.backoff,
                retry_on=httpx.TransportError,
                retry_result=lambda response: response.status_code in RETRY_STATUS,
            )
        except httpx.TransportError as e:
            raise HubAPIError(method, path, 0, f"hub unreachable: {e!r}") from e

    def stream(self, method: str, path: str, **kwargs: Any) -> AbstractAsyncContextManager:
        """A streamed API call (``async with hub.stream(...) as response``), no retries: for
        event streams such as a server's progress."""
        return self._client.stream(method, f"{self.api_url}/{path.lstrip('/')}", **kwargs)

    async def json(self, method: str, path: str, ok: Iterable[int] = (200,), **kwargs: Any) -> Any:
        """Call and decode JSON; :class:`HubAPIError` for unexpected status codes."""
        response = await self.request(method, path, **kwargs)
        if response.status_code not in set(ok):
            raise HubAPIError(method, path, response.status_code, response.text[:200])
        if not response.content:
            return None
        return response.json()

    async def paginate(
        self, path: str, params: dict[str, Any] | None = None, limit: int = 200
    ) -> AsyncIterator[dict]:
        """Every item of a paginated list endpoint (``/users``, ``/groups``...).

        Without the pagination media type the hub silently stops at
        ``api_page_max_limit`` items, so always ask for it.
        """
        params = dict(params or {})
        offset = 0
        while True:
            page_params = {**params, "offset": offset, "limit": limit}
            body = await self.json(
                "GET", path, params=page_params, headers={"Accept": PAGINATION_MEDIA_TYPE}
            )
            if isinstance(body, list):  # very old hubs: no pagination support
                for item in body:
                    yield item
                return
            items = body.get("items", [])
            for item in items:
                yield item
            next_page = (body.get("_pagination") or {}).get("next")
            if not next_page or not items:
                return
            offset = next_page.get("offset", offset + len(items))
            limit = next_page.get("limit", limit)

    def users(self, state: str | None = None, include_stopped_servers: bool = False):
        """All users, paginated; ``state`` = ``active``/``inactive``/``ready`` filters."""
        params: dict[str, Any] = {}
        if state:
            params["state"] = state
        if include_stopped_servers:
            params["include_stopped_servers"] = "1"
        return self.paginate("/users", params)


async def bounded_map(
    func: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    concurrency: int,
    logger: logging.Logger | None = None,
) -> list[R | BaseException]:
    """Run ``func`` on every item, at most ``concurrency`` at once.

    One failing item never stops the others: its exception is logged and returned in place
    of its result.
    """
    semaphore = asyncio.Semaphore(max(1, concurrency))
    logger = logger or log

    async def one(item: T) -> R | BaseException:
        async with semaphore:
            try:
                return await func(item)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                logger.error("error processing %r: %s", item, e, exc_info=logger.isEnabledFor(10))
                return e

    return list(await asyncio.gather(*(one(item) for item in items)))


# a path followed by a query string: the query goes (it may hold a token sent in a URL)
_QUERY_AFTER_PATH = re.compile(r"(/[^\s?'\"<>]*)\?[^\s'\"<>]+")
_TORNADO_LOGGERS = ("tornado.access", "tornado.application", "tornado.general")


def strip_query_strings(text: str) -> str:
    """``text`` with the query string of every URL path in it removed."""
    return _QUERY_AFTER_PATH.sub(r"\1", text)


class QueryStringFilter(logging.Filter):
    """Removes query strings from log records: tornado's error lines (``log_exception``) and
    HubAuth's messages name the request URI, and a caller may have put a token into it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken record: logging reports it as usual
        stripped = strip_query_strings(message)
        if stripped != message:
            record.msg, record.args = stripped, ()
        return True


_query_filter = QueryStringFilter()


def install_query_string_filter() -> None:
    """Put :class:`QueryStringFilter` on tornado's loggers and this module's (idempotent)."""
    for name in (*_TORNADO_LOGGERS, log.name):
        logger = logging.getLogger(name)
        if _query_filter not in logger.filters:
            logger.addFilter(_query_filter)


def log_request(handler: web.RequestHandler) -> None:
    """The access line of a service request: status, method, path (never the query), time."""
    status = handler.get_status()
    if status < 400:
        level = logging.INFO
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    request = handler.request
    logging.getLogger("tornado.access").log(
        level,
        "%d %s %s (%s) %.2fms",
        status,
        request.method,
        request.path,
        request.remote_ip,
        1000.0 * request.request_time(),
    )


def service_application(handlers: list, **settings: Any) -> web.Application:
    """A tornado Application for a service whose log lines carry no query strings."""
    install_query_string_filter()
    settings.setdefault("log_function", log_request)
    return web.Application(handlers, **settings)


class HubServiceApp(Application):
    """Base Application for a hub-managed service.

    Logs as JupyterHub and its services (jupyterhub-idle-culler) do: tornado's colour-aware
    formatter, JupyterHub's line format, INFO by default, tornado's and the package's loggers
    through the application's handler. Run it with :meth:`launch_instance`.
    """

    # any logging.Formatter class does (it is named in a dictConfig); traitlets declares its
    # own LevelFormatter as the type
    _log_formatter_cls = LogFormatter  # type: ignore[assignment]
    #: loggers that write through the application's handler while it runs
    _joined_loggers = ("tornado", "egi_notebooks")

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    @default("log_datefmt")
    def _default_log_datefmt(self) -> str:
        return "%Y-%m-%d %H:%M:%S"

    @default("log_format")
    def _default_log_format(self) -> str:
        return (
            "%(color)s[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s "
            "%(module)s:%(lineno)d]%(end_color)s %(message)s"
        )

    @classmethod
    def launch_instance(cls, argv: list[str] | None = None, **kwargs: Any) -> None:
        """Initialize and start the service, its loggers joined to the application's.

        The singleton and the loggers are put back afterwards: another Application in the
        same process (a JupyterHub, a second run) would otherwise find this instance and raise
        MultipleInstanceError, and pytest's log capture would see no package records.
        """
        saved = [
            (logger, logger.parent, logger.propagate, logger.level)
            for logger in map(logging.getLogger, cls._joined_loggers)
        ]
        try:
            app = cls.instance(**kwargs)
            app.initialize(argv)
            app.join_loggers()
            app.start()
        finally:
            for logger, parent, propagate, level in saved:
                logger.parent, logger.propagate = parent, propagate
                logger.setLevel(level)
            cls.clear_instance()

    def join_loggers(self) -> None:
        """tornado's and the package's records go through this application's handler and
        level (as JupyterHub hooks up tornado's loggers), not to the root logger."""
        for logger in map(logging.getLogger, self._joined_loggers):
            logger.parent = self.log
            logger.propagate = True
            logger.setLevel(cast("int | str", self.log_level))

    hub_api_url = Unicode(
        config=True,
        help="URL of the hub REST API (default: $JUPYTERHUB_API_URL, set by the hub).",
    )

    @default("hub_api_url")
    def _default_hub_api_url(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")

    api_token = Unicode(
        config=True,
        help="Token for the hub REST API (default: $JUPYTERHUB_API_TOKEN, set by the hub).",
    )

    @default("api_token")
    def _default_api_token(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    service_prefix = Unicode(
        config=True,
        help="URL prefix the service is served under (default: $JUPYTERHUB_SERVICE_PREFIX).",
    )

    @default("service_prefix")
    def _default_service_prefix(self) -> str:
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        return prefix if prefix.endswith("/") else prefix + "/"

    service_url = Unicode(
        config=True,
        help="URL the hub and its proxy reach the service at (default: "
        "$JUPYTERHUB_SERVICE_URL). Where the service listens is bind_url.",
    )

    @default("service_url")
    def _default_service_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101")

    bind_url = Unicode(
        config=True,
        help="Where the service listens, as http://<ip>:<port> (default: "
        f"${BIND_URL_ENV}, else derived from service_url). The derived default keeps the "
        "URL's host when it is a loopback address (127.x.x.x, ::1) or localhost, and is all "
        "interfaces (0.0.0.0; :: for an IPv6 host) on the URL's port for any other host: in a "
        "z2jh hub pod the URL is http://hub:<port>/ and hub is the hub Service, not an "
        "address of the pod. A bind_url without a port takes the URL's port.",
    )

    @default("bind_url")
    def _default_bind_url(self) -> str:
        return os.environ.get(BIND_URL_ENV, "")

    concurrency = Integer(
        10, config=True, help="How many hub API requests the service makes at once, at most."
    )
    request_timeout = Float(30, config=True, help="Timeout in seconds of one hub API request.")
    max_retries = Integer(
        3, config=True, help="Retries of a hub API request that failed to connect or got 502-504."
    )

    def make_hub_client(self) -> HubClient:
        if not self.api_token:
            self.log.critical("no hub API token: set JUPYTERHUB_API_TOKEN or api_token")
            raise SystemExit(2)
        return HubClient(
            self.hub_api_url,
            self.api_token,
            timeout=self.request_timeout,
            max_retries=self.max_retries,
            logger=self.log,
        )

    def listen_address(self) -> tuple[str, int]:
        """(ip, port) the service listens on: ``bind_url``, or derived from ``service_url``."""
        url = urlparse(self.service_url)
        url_port = url.port or (443 if url.scheme == "https" else 80)
        if self.bind_url:
            bind = urlparse(self.bind_url if "//" in self.bind_url else f"//{self.bind_url}")
            return bind.hostname or "0.0.0.0", bind.port or url_port
        return default_bind_ip(url.hostname or "127.0.0.1"), url_port

    def bind_sockets(self) -> list[socket.socket]:
        """The listening sockets of :meth:`listen_address`; a failure is one critical log line
        naming the option, and exit status 1."""
        try:
            ip, port = self.listen_address()
        except ValueError as e:  # a port that is not a number
            self.log.critical("invalid %s.bind_url %r: %s", type(self).__name__, self.bind_url, e)
            raise SystemExit(2) from None
        try:
            return netutil.bind_sockets(port, ip)
        except OSError as e:
            where = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            self.log.critical(
                "cannot listen on %s (%s): set %s.bind_url (or $%s) to an address of this "
                "host and a free port",
                where, e.strerror or e, type(self).__name__, BIND_URL_ENV,
            )  # fmt: skip
            raise SystemExit(1) from None

    def listen(self, server: HTTPServer) -> tuple[str, int]:
        """Start ``server`` on :meth:`bind_sockets`; the (ip, port) it listens on."""
        server.add_sockets(self.bind_sockets())
        return self.listen_address()


def default_bind_ip(url_host: str) -> str:
    """Where a service reached at ``url_host`` listens unless told: the host itself when it
    is loopback (no DNS lookup: a literal address or ``localhost``), else all interfaces."""
    if url_host.lower() in ("localhost", "localhost."):
        return url_host
    try:
        address = ipaddress.ip_address(url_host)
    except ValueError:  # a name such as z2jh's "hub": the hub Service, not this pod
        return "0.0.0.0"
    if address.is_loopback:
        return url_host
    return "::" if address.version == 6 else "0.0.0.0"
