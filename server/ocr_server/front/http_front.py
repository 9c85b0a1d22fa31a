"""The public HTTP front: the KServe v2 HTTP paths of the `ocr` model, checked, then forwarded to Triton.

The body is bounded in size while it is read and the JSON header in depth before any parser sees it
(Python's json module and Triton's frontend both recurse); the parsed header is checked against the
model (policy.py) and sent to Triton re-serialized, so Triton never sees duplicate keys, odd number
forms or nesting it would choke on. Binary tensors (the tritonclient binary-data extension) are
checked for framing and forwarded as they came.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .policy import (
    FIXED_SIZES,
    HTTP_INPUT_PARAMETERS,
    HTTP_OUTPUT_PARAMETERS,
    REQUEST_PARAMETERS,
    Limits,
    ModelSpec,
    Refusal,
    Refused,
    check_parameters,
    check_shape,
    check_string,
    check_tensor_bytes,
    invalid,
    json_depth,
    model_spec_from_metadata,
)
from .state import MODEL, FrontState, clean_request_id, new_request_id

__all__ = ["check_json_request", "create_app"]

STATUS = {Refusal.INVALID: 400, Refusal.NOT_FOUND: 404, Refusal.TOO_LARGE: 413, Refusal.UNAVAILABLE: 503,
          Refusal.UNAUTHENTICATED: 401}
HEADER_LENGTH = "inference-header-content-length"
INT_RANGES = {"INT8": 7, "INT16": 15, "INT32": 31, "INT64": 63}
UINT_RANGES = {"UINT8": 8, "UINT16": 16, "UINT32": 32, "UINT64": 64}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """KServe's error shape: {"error": "<message>"}."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _reject_constant(name: str) -> Any:
    raise invalid(f"{name} is not a JSON number; send finite numbers")


def parse_json(data: bytes, limits: Limits) -> Any:
    depth = json_depth(data)
    if depth > limits.max_json_depth:
        raise invalid(f"the JSON nests {depth} levels deep; at most {limits.max_json_depth} are accepted")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise invalid("the JSON is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise invalid(f"malformed JSON: {exc.msg} at byte {exc.pos}") from None


def _leaves(data: Any, name: str) -> Iterator[Any]:
    """The scalars of a (possibly nested) JSON `data` array, without recursion."""
    if not isinstance(data, list):
        raise invalid(f"input '{name}': data must be an array")
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if isinstance(item, dict):
                raise invalid(f"input '{name}': data must hold scalars, not objects")
            yield item
        else:
            stack.pop()


def _check_scalar(value: Any, datatype: str, name: str, limits: Limits) -> None:
    if datatype == "BYTES":
        check_string(value, f"an element of input '{name}'", Limits(max_string=limits.max_request_bytes))
    elif datatype == "BOOL":
        if type(value) is not bool:
            raise invalid(f"input '{name}' (BOOL): elements must be true or false")
    elif datatype in INT_RANGES or datatype in UINT_RANGES:
        bits = INT_RANGES.get(datatype)
        low, high = (-(2 ** bits), 2 ** bits - 1) if bits else (0, 2 ** UINT_RANGES[datatype] - 1)
        if type(value) is not int or not low <= value <= high:
            raise invalid(f"input '{name}' ({datatype}): elements must be integers in [{low}, {high}]")
    elif type(value) not in (int, float) or not math.isfinite(value) or abs(value) > 3.4e38:
        raise invalid(f"input '{name}' ({datatype}): elements must be finite numbers")


def check_json_request(obj: Any, spec: ModelSpec, binary: memoryview, limits: Limits) -> tuple[dict[str, Any], int]:
    """The canonical inference header to forward, and the number of images; refuses what Triton must not see."""
    if not isinstance(obj, dict):
        raise invalid("the inference request must be a JSON object")
    unknown = set(obj) - {"id", "parameters", "inputs", "outputs"}
    if unknown:
        raise invalid(f"unknown field(s) {sorted(unknown)[:4]} in the inference request")
    out: dict[str, Any] = {}
    if "id" in obj:
        out["id"] = check_string(obj["id"], "the request id", limits)
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise invalid("the request's parameters must be an object")
    check_parameters(params, REQUEST_PARAMETERS, "the request", limits)
    if params:
        out["parameters"] = params
    inputs, outputs = obj.get("inputs"), obj.get("outputs", [])
    if not isinstance(inputs, list) or not 1 <= len(inputs) <= limits.max_tensors:
        raise invalid(f"inputs must be an array of 1 to {limits.max_tensors} tensors")
    if not isinstance(outputs, list) or len(outputs) > limits.max_tensors:
        raise invalid(f"outputs must be an array of at most {limits.max_tensors} tensors")
    offset, images, seen = 0, 0, set()
    out["inputs"] = []
    for tensor in inputs:
        if not isinstance(tensor, dict) or set(tensor) - {"name", "shape", "datatype", "parameters", "data"}:
            raise invalid("each input is an object with name, shape, datatype and data or parameters")
        tspec = spec.input(tensor.get("name"))
        if tspec.name in seen:
            raise invalid(f"input '{tspec.name}' appears twice")
        seen.add(tspec.name)
        count = check_shape(tspec, tensor.get("shape"), tensor.get("datatype"), limits)
        if tspec.name == "image_bytes":
            images = count
        tparams = tensor.get("parameters", {})
        if not isinstance(tparams, dict):
            raise invalid(f"input '{tspec.name}': parameters must be an object")
        check_parameters(tparams, HTTP_INPUT_PARAMETERS, f"input '{tspec.name}'", limits)
        canon: dict[str, Any] = {"name": tspec.name, "shape": list(tensor["shape"]), "datatype": tspec.datatype}
        if ("data" in tensor) == ("binary_data_size" in tparams):
            raise invalid(f"input '{tspec.name}': send either data or parameters.binary_data_size")
        if "data" in tensor:
            leaves = list(_leaves(tensor["data"], tspec.name))
            if len(leaves) != count:
                raise invalid(f"input '{tspec.name}': {len(leaves)} element(s) of data, its shape says {count}")
            for value in leaves:
                _check_scalar(value, tspec.datatype, tspec.name, limits)
            canon["data"] = leaves
        else:
            size = tparams["binary_data_size"]
            if offset + size > len(binary):
                raise invalid(f"input '{tspec.name}': binary_data_size {size} runs past the end of the body")
            if tspec.datatype not in FIXED_SIZES and tspec.datatype != "BYTES":
                raise invalid(f"input '{tspec.name}': datatype {tspec.datatype} cannot be sent as binary data")
            check_tensor_bytes(tspec, binary[offset:offset + size], count)
            offset += size
            canon["parameters"] = {"binary_data_size": size}
        out["inputs"].append(canon)
    if offset != len(binary):
        raise invalid(f"the body has {len(binary) - offset} byte(s) after the tensors its header describes")
    if outputs:
        out["outputs"] = []
    names: set[str] = set()
    for tensor in outputs:
        if not isinstance(tensor, dict) or set(tensor) - {"name", "parameters"}:
            raise invalid("each output is an object with name and parameters")
        ospec = spec.output(tensor.get("name"))
        if ospec.name in names:
            raise invalid(f"output '{ospec.name}' is requested twice")
        names.add(ospec.name)
        oparams = tensor.get("parameters", {})
        if not isinstance(oparams, dict):
            raise invalid(f"output '{ospec.name}': parameters must be an object")
        check_parameters(oparams, HTTP_OUTPUT_PARAMETERS, f"output '{ospec.name}'", limits)
        out["outputs"].append({"name": ospec.name, **({"parameters": oparams} if oparams else {})})
    return out, images


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes `limit` bytes (declared or streamed)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise invalid(f"Content-Encoding {encoding[:32]!r} is not accepted; send the body uncompressed")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Refused(Refusal.TOO_LARGE, f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(Refusal.TOO_LARGE, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _lines_of(body: bytes, header_length: str | None) -> int | None:
    """The number of text lines in a Triton inference response (None if it cannot be read)."""
    try:
        head = body[:int(header_length)] if header_length else body
        outputs = json.loads(head)["outputs"]
        return int(next(o for o in outputs if o["name"] == "texts")["shape"][0])
    except (ValueError, KeyError, StopIteration, TypeError, IndexError):
        return None


def _error_of(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["error"])[:300]
    except (ValueError, KeyError, TypeError):
        return resp.text[:300]


def create_app(state: FrontState, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The HTTP front. `routers` (e.g. the PaddleX-style `POST /ocr`) are mounted behind the same bearer
    token and drain as inference; they reach the loopback Triton through `app.state.front.upstream`."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    if state.upstream.http.startswith("unix:"):  # Triton's HTTP on a Unix socket (the launcher's --socket-dir)
        transport = httpx.AsyncHTTPTransport(uds=state.upstream.http[len("unix:"):], limits=limits)
        base_url = "http://triton"
    else:
        transport = httpx.AsyncHTTPTransport(limits=limits)
        base_url = f"http://{state.upstream.http}"
    upstream = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(None, connect=5.0), transport=transport)
    app = FastAPI(title="ocr front", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.front = state
    app.state.upstream_http = upstream  # closed by the caller after the server stops

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> JSONResponse:
        headers = {"www-authenticate": "Bearer"} if exc.kind is Refusal.UNAUTHENTICATED else None
        return error(STATUS[exc.kind], exc.message, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    def authorize(request: Request) -> None:
        state.authorize(request.headers.get("authorization"))

    async def forward(method: str, path: str, content: bytes | None = None,
                      headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            return await upstream.request(method, path, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise Refused(Refusal.UNAVAILABLE, f"the inference server is not reachable: {type(exc).__name__}") from None

    def passthrough(resp: httpx.Response, extra: dict[str, str] | None = None) -> Response:
        headers = {k: v for k, v in resp.headers.items() if k in ("content-type", HEADER_LENGTH)}
        return Response(resp.content, status_code=resp.status_code, headers={**headers, **(extra or {})})

    def check_model(model: str, version: str = "") -> None:
        if model != MODEL:
            raise Refused(Refusal.NOT_FOUND, f"Request for unknown model: {model[:64]!r} is not found")
        if state.spec is not None:
            state.spec.check_version(version)

    def model_path(model: str, version: str) -> str:
        return f"/v2/models/{model}" + (f"/versions/{version}" if version else "")

    # -- health (open) ---------------------------------------------------------------------------
    @app.get("/v2/health/live")
    async def live() -> Response:
        return Response(status_code=200)

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        if state.draining:
            return Response(status_code=503)
        try:
            up = await upstream.get("/v2/health/ready", timeout=5.0)
            model = await upstream.get(f"/v2/models/{MODEL}/ready", timeout=5.0)
        except httpx.TransportError:
            return Response(status_code=503)
        ok = up.status_code == 200 and model.status_code == 200 and not state.draining
        return Response(status_code=200 if ok else 503)

    @app.get("/v2/models/{model}/ready")
    @app.get("/v2/models/{model}/versions/{version}/ready")
    async def model_ready(model: str, version: str = "") -> Response:
        check_model(model, version)
        if state.draining:
            return Response(status_code=503)
        return passthrough(await forward("GET", model_path(model, version) + "/ready"))

    # -- metadata (authorized) -------------------------------------------------------------------
    @app.get("/v2", dependencies=[Depends(authorize)])
    async def server_metadata() -> Response:
        return passthrough(await forward("GET", "/v2"))

    @app.get("/v2/models/{model}", dependencies=[Depends(authorize)])
    @app.get("/v2/models/{model}/versions/{version}", dependencies=[Depends(authorize)])
    async def model_metadata(model: str, version: str = "") -> Response:
        check_model(model, version)
        return passthrough(await forward("GET", model_path(model, version)))

    @app.get("/v2/models/{model}/config", dependencies=[Depends(authorize)])
    @app.get("/v2/models/{model}/versions/{version}/config", dependencies=[Depends(authorize)])
    async def model_config(model: str, version: str = "") -> Response:
        check_model(model, version)
        return passthrough(await forward("GET", model_path(model, version) + "/config"))

    @app.get("/v2/models/{model}/stats", dependencies=[Depends(authorize)])
    @app.get("/v2/models/{model}/versions/{version}/stats", dependencies=[Depends(authorize)])
    async def model_stats(model: str, version: str = "") -> Response:
        check_model(model, version)
        return passthrough(await forward("GET", model_path(model, version) + "/stats"))

    # -- refused extensions ------------------------------------------------------------------------
    @app.api_route("/v2/models/{model}/generate", methods=["POST"])
    @app.api_route("/v2/models/{model}/generate_stream", methods=["POST"])
    @app.api_route("/v2/models/{model}/versions/{version}/generate", methods=["POST"])
    @app.api_route("/v2/models/{model}/versions/{version}/generate_stream", methods=["POST"])
    async def generate(model: str, version: str = "") -> Response:
        return error(400, "the generate extension is not supported by this server; use /v2/models/ocr/infer")

    @app.api_route("/v2/systemsharedmemory/{rest:path}", methods=["GET", "POST"])
    @app.api_route("/v2/cudasharedmemory/{rest:path}", methods=["GET", "POST"])
    async def shared_memory(rest: str) -> Response:
        return error(400, "shared memory is not supported by this server; send tensors in the request")

    # -- inference -----------------------------------------------------------------------------------
    @app.post("/v2/models/{model}/infer")
    @app.post("/v2/models/{model}/versions/{version}/infer")
    async def infer(request: Request, model: str, version: str = "") -> Response:
        t0 = time.perf_counter()
        rid = clean_request_id(request.headers.get("x-request-id")) or new_request_id()
        fields: dict[str, object] = {"protocol": "http", "request_id": rid, "model": model[:64]}
        status, reason = 500, ""
        try:
            authorize(request)
            check_model(model, version)
            with state.admit():
                spec = await model_spec()
                body = await read_body(request, state.limits.max_request_bytes)
                header_length = request.headers.get(HEADER_LENGTH)
                if header_length is None:
                    split = len(body)
                elif header_length.isdigit() and int(header_length) <= len(body):
                    split = int(header_length)
                else:
                    raise invalid(f"{HEADER_LENGTH} must be a byte count within the body")
                view = memoryview(body)
                header, fields["images"] = check_json_request(parse_json(body[:split], state.limits), spec,
                                                              view[split:], state.limits)
                header.setdefault("id", rid)
                head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                send_headers = {"content-type": "application/octet-stream"}
                if split < len(body):
                    send_headers[HEADER_LENGTH] = str(len(head))
                resp = await forward("POST", model_path(model, version) + "/infer", head + view[split:].tobytes(),
                                     send_headers)
            status = resp.status_code
            if status == 200:
                fields["lines"] = _lines_of(resp.content, resp.headers.get(HEADER_LENGTH))
            else:
                reason = _error_of(resp)
            return passthrough(resp, {"x-request-id": rid})
        except Refused as refusal:
            status, reason = STATUS[refusal.kind], refusal.message
            response = await refused(request, refusal)
            response.headers["x-request-id"] = rid
            return response
        finally:
            fields["outcome"] = status
            if reason:
                fields["reason"] = reason
            state.log.record(**fields, latency_ms=round((time.perf_counter() - t0) * 1000, 2))

    async def model_spec() -> ModelSpec:
        if state.spec is None:
            resp = await forward("GET", f"/v2/models/{MODEL}")
            if resp.status_code != 200:
                raise Refused(Refusal.UNAVAILABLE, f"model '{MODEL}' is not available yet")
            state.spec = model_spec_from_metadata(resp.json())
        return state.spec

    # extra routers sit behind the token and the drain; a middleware, because a router may wrap its own
    # handlers (and dependencies) in an error handler of its own
    extra_paths = {route.path for router in routers for route in router.routes if hasattr(route, "path")}
    for router in routers:
        app.include_router(router)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path not in extra_paths:
            return await call_next(request)
        try:
            authorize(request)
            with state.admit():
                return await call_next(request)
        except Refused as refusal:
            return await refused(request, refusal)

    @app.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    async def not_found(rest: str) -> Response:
        return error(404, f"no such endpoint: /{rest[:64]}")

    return app
