"""PaddleX's OCR serving API (`POST /ocr`) as a FastAPI router over the Triton `ocr` ensemble."""
from __future__ import annotations

from ocr_server.paddlex.app import create_gateway_app
from ocr_server.paddlex.router import GatewaySettings, OcrGateway

__all__ = ["GatewaySettings", "OcrGateway", "create_gateway_app"]
