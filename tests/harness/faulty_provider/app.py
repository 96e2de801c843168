"""Wiring: the tornado application, the listening socket on 127.0.0.1, and ``main``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from .admin import admin_routes
from .base import Provider, log, request_summary
from .config import ConfigError, ProviderConfig, load_config
from .handlers import (
    PATHS,
    DiscoveryHandler,
    IntrospectionHandler,
    JWKSHandler,
    RevocationHandler,
    TokenHandler,
    UserinfoHandler,
)
from .keys import SigningKey
from .pages import AuthorizeHandler, EndSessionHandler
from .tokens import TokenStore

HOST = "127.0.0.1"  # loopback only: this provider hands out tokens to anyone with a password
PRUNE_INTERVAL_MS = 30_000
# printed with the issuer once the provider listens (tests.harness.provider reads it)
READY_LINE = "provider ready at "

HANDLERS = {
    "discovery": DiscoveryHandler,
    "jwks": JWKSHandler,
    "authorization": AuthorizeHandler,
    "token": TokenHandler,
    "userinfo": UserinfoHandler,
    "revocation": RevocationHandler,
    "introspection": IntrospectionHandler,
    "end_session": EndSessionHandler,
}


def access_log(handler: RequestHandler) -> None:
    status = handler.get_status()
    level = logging.INFO if status < 500 else logging.WARNING
    ms = 1000.0 * handler.request.request_time()
    log.log(level, "%d %s %.1fms", status, request_summary(handler), ms)


def make_provider(config: ProviderConfig, port: int) -> Provider:
    issuer = f"http://{HOST}:{port}{config.realm_path}"
    key = SigningKey(config.signing_key_file)
    return Provider(config=config, key=key, store=TokenStore(config, key, issuer), issuer=issuer)


def make_app(provider: Provider) -> Application:
    realm = provider.config.realm_path
    routes = [(realm + PATHS[name], handler) for name, handler in HANDLERS.items()]
    routes += admin_routes()
    kwargs = {"provider": provider}
    return Application(
        [(pattern, handler, kwargs) for pattern, handler in routes],
        log_function=access_log,
    )


async def serve(config: ProviderConfig, port: int) -> None:
    sockets = bind_sockets(port, HOST)
    port = sockets[0].getsockname()[1]  # --port 0 picks a free port
    provider = make_provider(config, port)
    server = HTTPServer(make_app(provider), xheaders=False)
    server.add_sockets(sockets)
    pruner = PeriodicCallback(provider.store.prune, PRUNE_INTERVAL_MS)
    pruner.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"{READY_LINE}{provider.issuer}", flush=True)
    await stop.wait()
    pruner.stop()
    server.stop()
    await asyncio.wait_for(server.close_all_connections(), timeout=2)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.faulty_provider",
        description="Local OpenID Connect provider standing in for EGI Check-in (127.0.0.1 only).",
    )
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--config", required=True, help="JSON configuration file")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=args.log_level.upper(),
        format="[%(levelname)1.1s %(asctime)s provider] %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config)
        asyncio.run(serve(config, args.port))
    except ConfigError as e:
        print(f"faulty_provider: configuration error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"faulty_provider: cannot listen on {HOST}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0
