"""Run the public front: the gRPC and HTTP fronts in one asyncio loop, drained on SIGTERM/SIGINT.

On a signal the front turns readiness false and refuses new inference (UNAVAILABLE / 503, both
retryable), waits up to --grace-period for the requests in flight, then stops; tritonserver is
stopped only after that (by the launcher), so the ensemble's calls to its steps finish too.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import socket
import ssl
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from .grpc_front import build_grpc_server
from .http_front import STATUS, create_app
from .policy import Limits, Refusal, Refused
from .reqlog import RequestLog
from .state import FrontState, Upstream

__all__ = ["FrontOptions", "main", "serve"]

log = logging.getLogger("ocr_front")


@dataclass
class FrontOptions:
    upstream: Upstream
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    grace_period: float = 30.0
    auth_token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    request_log: bool = True
    log_rate: float = 100.0
    max_request_bytes: int = Limits.max_request_bytes
    routers: tuple[str, ...] = ()  # "module:attribute" of extra FastAPI APIRouters (e.g. the documents endpoint)
    gateway_port: int = 0          # the PaddleX serving API (POST /ocr, /docs) on its own port; 0: none


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the front decides when to stop (after the drain)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def read_token(path: Path) -> str:
    """The bearer token from an owner-only file (a token others can read is not a secret)."""
    if path.stat().st_mode & 0o077:
        raise SystemExit(f"{path} is readable by other users: chmod 600 it")
    token = path.read_text().strip()
    if not token or any(c.isspace() for c in token) or not token.isascii():
        raise SystemExit(f"{path} must hold one token of printable ASCII without spaces")
    return token


def load_router(spec: str, state: FrontState) -> APIRouter:
    """The APIRouter named by "package.module:attribute": a router, or a function of the front's state
    that makes one (e.g. ocr_server.front.paddlex:gateway_router)."""
    module, _, attribute = spec.partition(":")
    found = getattr(importlib.import_module(module), attribute or "router")
    router = found if isinstance(found, APIRouter) else found(state) if callable(found) else found
    if not isinstance(router, APIRouter):
        raise SystemExit(f"--router {spec}: {type(router).__name__} is not a FastAPI APIRouter")
    return router


def create_guarded_gateway(state: FrontState) -> FastAPI:
    """The PaddleX serving API app (ocr_server.paddlex) behind the front's token and drain, for its own port."""
    from ocr_server.paddlex.app import create_gateway_app
    from ocr_server.paddlex.router import GatewaySettings

    app = create_gateway_app(GatewaySettings(triton_url=state.upstream.grpc))

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method in ("GET", "HEAD"):  # docs, OpenAPI schema and metrics stay open, as health does
            return await call_next(request)
        try:
            state.authorize(request.headers.get("authorization"))
            with state.admit():
                return await call_next(request)
        except Refused as refusal:
            return paddlex_refusal(refusal)

    return app


def paddlex_refusal(refusal: Refused) -> Response:
    """A refusal of the front (token, drain) in PaddleX's error shape, with the front's HTTP status."""
    status = STATUS[refusal.kind]
    headers = {"www-authenticate": "Bearer"} if refusal.kind is Refusal.UNAUTHENTICATED else None
    return JSONResponse({"logId": str(uuid.uuid4()), "errorCode": status, "errorMsg": refusal.message},
                        status_code=status, headers=headers)


def _bind_or_none(host: str, port: int) -> socket.socket | None:
    """A listening socket for the gateway, or None (logged) when the port is taken: the gateway is an
    extra door, so the KServe front keeps serving without it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        log.error("the PaddleX gateway cannot listen on %s: %s; serving without it", _address(host, port), exc)
        return None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve(opts: FrontOptions, routers: Sequence[APIRouter] = ()) -> int:
    token = read_token(opts.auth_token_file) if opts.auth_token_file else None
    state = FrontState(opts.upstream, Limits(max_request_bytes=opts.max_request_bytes), token,
                       RequestLog(enabled=opts.request_log, rate=opts.log_rate))
    credentials = None
    if opts.tls_cert and opts.tls_key:
        credentials = grpc.ssl_server_credentials([(opts.tls_key.read_bytes(), opts.tls_cert.read_bytes())])
    grpc_server, channel = build_grpc_server(state, _address(opts.host, opts.grpc_port), credentials)
    app = create_app(state, [*routers, *(load_router(spec, state) for spec in opts.routers)])
    config = uvicorn.Config(app, host=opts.host, port=opts.http_port, lifespan="off", access_log=False,
                            log_level="warning", timeout_graceful_shutdown=5,
                            ssl_certfile=str(opts.tls_cert) if credentials else None,
                            ssl_keyfile=str(opts.tls_key) if credentials else None,
                            ssl_version=ssl.PROTOCOL_TLS_SERVER)
    http_server = _Uvicorn(config)
    servers = [http_server]
    gateway_socket = _bind_or_none(opts.host, opts.gateway_port) if opts.gateway_port else None
    if gateway_socket is not None:
        gateway = create_guarded_gateway(state)
        servers.append(_Uvicorn(uvicorn.Config(
            gateway, host=opts.host, port=opts.gateway_port, lifespan="on", access_log=False, log_level="warning",
            timeout_graceful_shutdown=5, ssl_certfile=str(opts.tls_cert) if credentials else None,
            ssl_keyfile=str(opts.tls_key) if credentials else None, ssl_version=ssl.PROTOCOL_TLS_SERVER)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await grpc_server.start()
    http_tasks = [asyncio.create_task(servers[0].serve())]
    if gateway_socket is not None:
        http_tasks.append(asyncio.create_task(servers[1].serve(sockets=[gateway_socket])))
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait([http_tasks[0], stop_task], return_when=asyncio.FIRST_COMPLETED)
    if http_tasks[0].done():  # the HTTP front could not start (port taken, bad certificate)
        await grpc_server.stop(0)
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*http_tasks, return_exceptions=True)
        return 1
    log.warning("draining: readiness is false, new requests are refused; %d in flight", state.in_flight)
    left = await state.drain(opts.grace_period)
    if left:
        log.warning("grace period of %.0f s over with %d request(s) still in flight", opts.grace_period, left)
    else:
        log.warning("drained")
    for server in servers:
        server.should_exit = True
    await grpc_server.stop(1.0)
    await asyncio.gather(*http_tasks)
    await app.state.upstream_http.aclose()
    await channel.close()
    state.log.close()
    return 0


def parse_args(argv: Sequence[str] | None = None) -> FrontOptions:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream-grpc", required=True,
                    help="Triton's gRPC frontend: host:port (loopback) or unix:<socket path>")
    ap.add_argument("--upstream-http", required=True,
                    help="Triton's HTTP frontend: host:port (loopback) or unix:<socket path>")
    ap.add_argument("--host", default="127.0.0.1", help="public listen address (0.0.0.0 for all)")
    ap.add_argument("--http-port", type=int, default=8000)
    ap.add_argument("--grpc-port", type=int, default=8001)
    ap.add_argument("--grace-period", type=float, default=30.0, help="seconds in-flight requests get at shutdown")
    ap.add_argument("--auth-token-file", type=Path, help="require 'authorization: Bearer <token in file>'")
    ap.add_argument("--tls-cert", type=Path, help="PEM certificate (chain) for TLS on both fronts")
    ap.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    ap.add_argument("--no-request-log", action="store_true", help="no JSON line per request on stderr")
    ap.add_argument("--log-rate", type=float, default=100.0, help="request log lines per second at most")
    ap.add_argument("--max-request-bytes", type=int, default=Limits.max_request_bytes)
    ap.add_argument("--gateway-port", type=int, default=0,
                    help="also serve the PaddleX API (POST /ocr, /docs, /metrics) on this port; 0: not")
    ap.add_argument("--router", action="append", default=[], metavar="MODULE:ATTR",
                    help="mount this FastAPI APIRouter too (behind the token and the drain); repeatable")
    args = ap.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        ap.error("--tls-cert and --tls-key go together")
    return FrontOptions(Upstream(args.upstream_grpc, args.upstream_http), args.host, args.http_port, args.grpc_port,
                        args.grace_period, args.auth_token_file, args.tls_cert, args.tls_key,
                        not args.no_request_log, args.log_rate, args.max_request_bytes, tuple(args.router),
                        args.gateway_port)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s front %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call otherwise
    return asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
