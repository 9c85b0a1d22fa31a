"""The PaddleX serving API (`POST /ocr`, ocr_server.paddlex) mounted on the front's HTTP port.

    ocr-serve --front-router ocr_server.front.paddlex:gateway_router

The gateway builds its own well-formed requests and sends them to Triton's loopback gRPC port; the
front puts its bearer token and drain in front of it like any extra router.
"""
from __future__ import annotations

from fastapi import APIRouter

from ocr_server.front.state import FrontState

__all__ = ["gateway_router"]


def gateway_router(state: FrontState) -> APIRouter:
    from ocr_server.paddlex.router import GatewaySettings, OcrGateway

    return OcrGateway(GatewaySettings(triton_url=state.upstream.grpc)).router
