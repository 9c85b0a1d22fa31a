"""PaddleX's OCR serving API, `POST /ocr`, in front of the Triton `ocr` ensemble (async gRPC).

`OcrGateway(settings).router` is a FastAPI APIRouter to include in any FastAPI app; every answer,
including a body that does not parse, has PaddleX's shape (`logId`, `errorCode`, `errorMsg`[, `result`])
and an HTTP status that says who must act: 413 too large, 422 bad request, 503 server unavailable,
504 timeout, 500 anything else (the message never carries a stack trace). The gateway holds no state
but its gRPC channel and the server's pipeline settings (read once from Triton's model config).
"""
from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Counter, Histogram

from ocr_client import AsyncOcrClient, OcrError, OcrInvalidInputError, OcrResult, OcrTimeoutError, OcrUnavailableError
from ocr_server.paddlex.files import FILE_TYPE_PDF, GatewayError, LoadedFile, load_file
from ocr_server.paddlex.schemas import ErrorResponse, OcrRequest, OcrResponse

__all__ = ["GatewaySettings", "OcrGateway"]

log = logging.getLogger("ocr_server.paddlex")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway reaches Triton and what it accepts."""

    triton_url: str = "localhost:8001"
    model_name: str = "ocr"
    timeout_s: float = 120.0
    allowed_url_hosts: frozenset[str] = field(default_factory=frozenset)
    max_body_bytes: int = 48 * 1024 * 1024
    max_file_bytes: int = 32 * 1024 * 1024
    fetch_timeout_s: float = 20.0


def _error(status: int, message: str, log_id: str) -> JSONResponse:
    body = ErrorResponse(logId=log_id, errorCode=status, errorMsg=message)
    return JSONResponse(body.model_dump(), status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request body: " + "; ".join(parts)


class OcrGateway:
    """The `POST /ocr` router, its Triton client and its Prometheus metrics (`registry`)."""

    def __init__(self, settings: GatewaySettings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter("ocr_gateway_requests", "POST /ocr requests by HTTP status", ["status"],
                                registry=self.registry)
        self.errors = Counter("ocr_gateway_errors", "POST /ocr requests answered with an error, by errorCode",
                              ["error_code"], registry=self.registry)
        self.latency = Histogram("ocr_gateway_request_seconds", "POST /ocr wall time, in seconds",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self._client: AsyncOcrClient | None = None
        self._server_params: dict[str, str] | None = None
        self.router = APIRouter(route_class=self._route_class())
        self.router.add_api_route("/ocr", self._ocr, methods=["POST"], response_model=OcrResponse,
                                  responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
                                             500: {"model": ErrorResponse}, 503: {"model": ErrorResponse},
                                             504: {"model": ErrorResponse}},
                                  summary="OCR an image or a PDF (PaddleX serving API)")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # ------------------------------------------------------------------ plumbing
    def _route_class(self) -> type[APIRoute]:
        gateway = self

        class PaddlexRoute(APIRoute):
            """Every outcome in PaddleX's shape, counted and timed."""

            def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
                handler = super().get_route_handler()

                async def route(request: Request) -> Response:
                    start = time.perf_counter()
                    request.state.log_id = str(uuid.uuid4())
                    response = await gateway._answer(handler, request)
                    gateway.requests.labels(str(response.status_code)).inc()
                    if response.status_code != 200:
                        gateway.errors.labels(str(response.status_code)).inc()
                    gateway.latency.observe(time.perf_counter() - start)
                    return response

                return route

        return PaddlexRoute

    async def _answer(self, handler: Callable[[Request], Awaitable[Response]], request: Request) -> Response:
        log_id = request.state.log_id
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.settings.max_body_bytes:
            return _error(413, f"the request body is {length} bytes; the limit is {self.settings.max_body_bytes}",
                          log_id)
        try:
            return await handler(request)
        except RequestValidationError as exc:
            return _error(422, _validation_message(exc), log_id)
        except GatewayError as exc:
            return _error(exc.status, exc.message, log_id)
        except Exception:  # noqa: BLE001 - a bug must not show a stack trace to the client
            log.exception("POST /ocr %s failed", log_id)
            return _error(500, f"internal error (logId {log_id}); the server log has the details", log_id)

    def _triton(self) -> AsyncOcrClient:
        if self._client is None:
            s = self.settings
            self._client = AsyncOcrClient(s.triton_url, model_name=s.model_name, timeout=s.timeout_s, retries=2)
        return self._client

    async def server_params(self) -> dict[str, str]:
        """det_preprocess's config parameters (request defaults, PDF resolution): the server's own values."""
        if self._server_params is None:
            import tritonclient.grpc.aio as grpcclient

            client = grpcclient.InferenceServerClient(self.settings.triton_url)
            try:
                config = await client.get_model_config("det_preprocess", as_json=True)
            finally:
                await client.close()
            params = config.get("config", config).get("parameters", {})
            self._server_params = {k: v.get("string_value", "") for k, v in params.items()}
        return self._server_params

    # ------------------------------------------------------------------ the endpoint
    async def _ocr(self, body: OcrRequest, request: Request) -> JSONResponse:
        s = self.settings
        loaded = await load_file(body.file, body.fileType, s.allowed_url_hosts, s.max_file_bytes,
                                 s.fetch_timeout_s)
        params = _ocr_params(body)
        try:
            results = await self._triton().ocr_batch([loaded.data], **params)
        except OcrInvalidInputError as exc:
            raise GatewayError(422, exc.message.replace("image_bytes", "file")) from None
        except OcrUnavailableError as exc:
            raise GatewayError(503, f"the OCR server is unavailable, retry later ({exc.message})") from None
        except OcrTimeoutError:
            raise GatewayError(504, f"the OCR server did not answer within {s.timeout_s:g} s") from None
        except OcrError as exc:
            log.error("POST /ocr %s: %s", request.state.log_id, exc.message)
            raise GatewayError(500, f"the OCR server failed (logId {request.state.log_id})") from None
        server = await self.server_params()
        visualize = body.visualize is not False
        pictures, sizes = await asyncio.to_thread(_pictures, loaded, results, server, visualize)
        items = [_result_item(r, body, server, pic) for r, pic in zip(results, pictures, strict=True)]
        if loaded.file_type == FILE_TYPE_PDF:
            data_info: dict[str, Any] = {"type": "pdf", "numPages": len(results)}
            if all(sz is not None for sz in sizes):
                data_info["pages"] = [{"width": w, "height": h} for w, h in sizes]  # type: ignore[misc]
        else:
            data_info = {"type": "image"}
            if sizes and sizes[0] is not None:
                data_info["width"], data_info["height"] = sizes[0]
        response = {"logId": request.state.log_id, "errorCode": 0, "errorMsg": "Success",
                    "result": {"ocrResults": items, "dataInfo": data_info}}
        return JSONResponse(response)


def _ocr_params(body: OcrRequest) -> dict[str, Any]:
    """Ensemble parameters from PaddleX's fields; `maxLongSide` is limit_type max (PaddleX 2)."""
    params: dict[str, Any] = {
        "limit_side_len": body.textDetLimitSideLen, "limit_type": body.textDetLimitType,
        "thresh": body.textDetThresh, "box_thresh": body.textDetBoxThresh, "unclip_ratio": body.textDetUnclipRatio,
        "text_rec_score_thresh": body.textRecScoreThresh, "use_textline_orientation": body.useTextlineOrientation,
        "use_doc_orientation_classify": body.useDocOrientationClassify, "use_doc_unwarping": body.useDocUnwarping,
    }
    if body.inferenceParams is not None and body.inferenceParams.maxLongSide is not None \
            and body.textDetLimitSideLen is None:
        params["limit_side_len"], params["limit_type"] = body.inferenceParams.maxLongSide, "max"
    try:
        from ocr_client import OcrParams

        OcrParams(**params)  # the client's checks, as 422 before any network call
    except OcrInvalidInputError as exc:
        raise GatewayError(422, exc.message) from None
    return {k: v for k, v in params.items() if v is not None}


def _pictures(loaded: LoadedFile, results: list[OcrResult], server: dict[str, str], visualize: bool
              ) -> tuple[list[str | None], list[tuple[int, int] | None]]:
    """The base64 JPEG picture of each result (when `visualize`) and each page's size (width, height)."""
    import numpy as np

    from ppocr_steps.image_io import decode_image, peek_size

    if loaded.file_type != FILE_TYPE_PDF:
        if not visualize:
            peek = peek_size(loaded.data)
            size = (peek[1], peek[2]) if peek is not None and peek[1] > 0 else None
            return [None], [size]
        pages = [decode_image(loaded.data, 1 << 40, 1, 1 << 40)]
    elif visualize:
        pages = _render_pdf(loaded.data, server, len(results))
    else:
        return [None] * len(results), [None] * len(results)
    from ocr_client._vis import draw_result, encode_jpeg

    pictures: list[str | None] = []
    sizes: list[tuple[int, int] | None] = []
    for result, page in zip(results, pages, strict=True):
        sizes.append((int(page.shape[1]), int(page.shape[0])))
        picture = draw_result(np.ascontiguousarray(page), result)
        pictures.append(base64.b64encode(encode_jpeg(picture)).decode("ascii"))
    return pictures, sizes


def _render_pdf(data: bytes, server: dict[str, str], pages: int) -> list[Any]:
    """The pages the server read, rendered as it rendered them (its pdf_* settings), in a bounded child."""
    from ppocr_steps.pdf import PdfLimits, rasterize_pdf

    limits = PdfLimits(dpi=float(server.get("pdf_dpi", PdfLimits.dpi)), max_pages=pages,
                       max_document_pages=int(server.get("pdf_max_document_pages", PdfLimits.max_document_pages)),
                       max_page_pixels=int(server.get("pdf_max_page_pixels", PdfLimits.max_page_pixels)),
                       timeout_s=float(server.get("pdf_render_timeout_s", PdfLimits.timeout_s)),
                       max_memory_mb=int(server.get("pdf_render_max_memory_mb", PdfLimits.max_memory_mb)))
    return rasterize_pdf(data, limits, "file")


def _result_item(r: OcrResult, body: OcrRequest, server: dict[str, str], picture: str | None) -> dict[str, Any]:
    def effective(value: Any, key: str, kind: type) -> Any:
        return value if value is not None else kind(server[key]) if key in server else None

    def flag(value: bool | None, key: str) -> bool:
        return bool(value) if value is not None else server.get(key, "false").lower() in ("1", "true", "yes", "on")

    limit_side_len, limit_type = body.textDetLimitSideLen, body.textDetLimitType
    if limit_side_len is None and body.inferenceParams is not None and body.inferenceParams.maxLongSide:
        limit_side_len, limit_type = body.inferenceParams.maxLongSide, "max"
    ori = flag(body.useDocOrientationClassify, "default_use_doc_orientation_classify")
    textline = flag(body.useTextlineOrientation, "default_use_textline_orientation")
    pruned = r.to_paddlex()
    if not textline:
        pruned["textline_orientation_angles"] = [-1] * len(r.lines)
    result: dict[str, Any] = {
        "model_settings": {"use_doc_preprocessor": ori, "use_textline_orientation": textline},
        "dt_polys": pruned["rec_polys"],  # the kept lines' boxes: detections dropped by recognition are not returned
        "text_det_params": {
            "limit_side_len": effective(limit_side_len, "default_limit_side_len", int),
            "limit_type": effective(limit_type, "default_limit_type", str),
            "thresh": effective(body.textDetThresh, "default_thresh", float),
            "box_thresh": effective(body.textDetBoxThresh, "default_box_thresh", float),
            "unclip_ratio": effective(body.textDetUnclipRatio, "default_unclip_ratio", float),
        },
        "text_type": "general",
        "text_rec_score_thresh": effective(body.textRecScoreThresh, "default_text_rec_score_thresh", float),
        **pruned,
    }
    if ori:
        result["doc_preprocessor_res"] = {"model_settings": {"use_doc_orientation_classify": True,
                                                             "use_doc_unwarping": False}, "angle": r.angle}
    if r.page is not None:
        result["page_index"] = r.page
    texts = [{"poly": poly, "text": text, "score": score}
             for poly, text, score in zip(pruned["rec_polys"], pruned["rec_texts"], pruned["rec_scores"], strict=True)]
    return {"prunedResult": result, "ocrImage": picture, "docPreprocessingImage": None, "inputImage": None,
            "texts": texts, "image": picture}
