"""A stand-alone gateway app (`ocr-gateway`): the PaddleX router, its metrics at /metrics, OpenAPI at /docs.

    ocr-gateway --triton-url localhost:8001                 # http://127.0.0.1:8080/ocr, /docs, /metrics
    ocr-gateway --allow-url-host files.example.com          # also fetch `file` URLs from that host
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import make_asgi_app

from ocr_server.paddlex.router import GatewaySettings, OcrGateway

__all__ = ["create_gateway_app", "main"]


def create_gateway_app(settings: GatewaySettings) -> FastAPI:
    """FastAPI app serving `POST /ocr` (PaddleX API), `GET /metrics` (the gateway's Prometheus metrics)
    and the framework's `/docs`, `/openapi.json`."""
    gateway = OcrGateway(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await gateway.close()

    app = FastAPI(title="PP-OCR gateway (PaddleX serving API)", version="0.1.0", lifespan=lifespan)
    app.include_router(gateway.router)
    app.mount("/metrics", make_asgi_app(registry=gateway.registry))
    app.state.gateway = gateway
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `ocr-gateway`."""
    ap = argparse.ArgumentParser(prog="ocr-gateway", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--triton-url", default="localhost:8001", metavar="HOST:PORT",
                    help="gRPC address of the Triton server (default: %(default)s)")
    ap.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    ap.add_argument("--port", type=int, default=8080, help="listen port (default: %(default)s)")
    ap.add_argument("--model-name", default="ocr", help="the ensemble (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=120.0, metavar="S",
                    help="seconds per OCR call to Triton (default: %(default)s)")
    ap.add_argument("--allow-url-host", action="append", default=[], metavar="HOST",
                    help="fetch `file` URLs from this host (repeatable); without it URLs are refused")
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    settings = GatewaySettings(triton_url=args.triton_url, model_name=args.model_name, timeout_s=args.timeout,
                               allowed_url_hosts=frozenset(h.lower() for h in args.allow_url_host))
    uvicorn.run(create_gateway_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
