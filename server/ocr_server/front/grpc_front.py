"""The public gRPC front: KServe `inference.GRPCInferenceService` for the `ocr` model only.

Each request is parsed and checked (policy.py) before it is forwarded to Triton's gRPC frontend on
loopback; Triton's answers and errors (with their codes) are passed back unchanged. Methods this
server does not offer to clients (repository, shared memory, statistics, trace, logging, streaming)
keep the generated servicer's UNIMPLEMENTED answer.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NoReturn

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2, service_pb2_grpc

from .policy import (
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
    model_spec_from_metadata,
)
from .state import MODEL, FrontState, clean_request_id, new_request_id

__all__ = ["GrpcFront", "build_grpc_server", "check_infer_request"]

CODES = {
    Refusal.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Refusal.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Refusal.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Refusal.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Refusal.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
}
# which InferTensorContents field holds each datatype (FP16/BF16 have none: raw only)
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
ALL_CONTENTS = sorted(set(CONTENTS_FIELD.values()))


def _parameters(params: Any) -> dict[str, object]:
    """A protobuf map<string, InferParameter> as {key: python value}."""
    out: dict[str, object] = {}
    for key, param in params.items():
        which = param.WhichOneof("parameter_choice")
        out[key] = getattr(param, which) if which else None
    return out


def check_infer_request(req: service_pb2.ModelInferRequest, spec: ModelSpec, limits: Limits) -> int:
    """Refuse what the front does not forward; returns the number of images."""
    if req.model_name != spec.name:
        raise Refused(Refusal.NOT_FOUND, f"Request for unknown model: {req.model_name[:64]!r} is not found")
    spec.check_version(req.model_version)
    check_string(req.id, "the request id", limits)
    check_parameters(_parameters(req.parameters), {k: v for k, v in REQUEST_PARAMETERS.items()
                                                   if k != "binary_data_output"}, "the request", limits)
    if not req.inputs or len(req.inputs) > limits.max_tensors or len(req.outputs) > limits.max_tensors:
        raise invalid(f"a request needs 1 to {limits.max_tensors} inputs and at most {limits.max_tensors} outputs")
    raw = req.raw_input_contents
    if raw and len(raw) != len(req.inputs):
        raise invalid(f"raw_input_contents has {len(raw)} entries for {len(req.inputs)} inputs; send one per input")
    seen: set[str] = set()
    images = 0
    for i, tensor in enumerate(req.inputs):
        tspec = spec.input(tensor.name)
        if tensor.name in seen:
            raise invalid(f"input '{tensor.name}' appears twice")
        seen.add(tensor.name)
        check_parameters(_parameters(tensor.parameters), {}, f"input '{tensor.name}'", limits)
        count = check_shape(tspec, list(tensor.shape), tensor.datatype, limits)
        if tensor.name == "image_bytes":
            images = count
        if raw:
            if tensor.HasField("contents"):
                raise invalid(f"input '{tensor.name}' has both contents and raw_input_contents; send one")
            check_tensor_bytes(tspec, raw[i], count)
            continue
        field = CONTENTS_FIELD.get(tspec.datatype)
        have = {name: len(getattr(tensor.contents, name)) for name in ALL_CONTENTS}
        if field is None or have[field] != count or sum(have.values()) != count:
            raise invalid(f"input '{tensor.name}': its contents must hold {count} element(s) in {field}")
    outputs: set[str] = set()
    for out in req.outputs:
        spec.output(out.name)
        if out.name in outputs:
            raise invalid(f"output '{out.name}' is requested twice")
        outputs.add(out.name)
        check_parameters(_parameters(out.parameters), {}, f"output '{out.name}'", limits)
    return images


class GrpcFront:
    def __init__(self, state: FrontState, channel: grpc.aio.Channel) -> None:
        self.state = state
        self.upstream = service_pb2_grpc.GRPCInferenceServiceStub(channel)

    # -- helpers ---------------------------------------------------------------------------------
    async def _refuse(self, context: grpc.aio.ServicerContext, refusal: Refused) -> NoReturn:
        await context.abort(CODES[refusal.kind], refusal.message)
        raise AssertionError("unreachable")  # abort raises

    def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        metadata: Iterable[tuple[str, str | bytes]] = context.invocation_metadata() or ()
        auth = next((v for k, v in metadata if k == "authorization"), None)
        self.state.authorize(auth if isinstance(auth, str) else None)

    async def _call(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Forward to Triton with the client's remaining deadline; Triton's errors keep their codes."""
        remaining = context.time_remaining()
        try:
            return await getattr(self.upstream, method)(request, timeout=remaining)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")

    def _check_model(self, name: str) -> None:
        if name != MODEL:
            raise Refused(Refusal.NOT_FOUND, f"Request for unknown model: {name[:64]!r} is not found")

    # -- health (open) -----------------------------------------------------------------------------
    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        if self.state.draining:
            return service_pb2.ServerReadyResponse(ready=False)
        try:
            up = await self.upstream.ServerReady(service_pb2.ServerReadyRequest(), timeout=5)
            model = await self.upstream.ModelReady(service_pb2.ModelReadyRequest(name=MODEL), timeout=5)
        except grpc.aio.AioRpcError:
            return service_pb2.ServerReadyResponse(ready=False)
        return service_pb2.ServerReadyResponse(ready=up.ready and model.ready and not self.state.draining)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        try:
            self._check_model(request.name)
        except Refused as refusal:
            await self._refuse(context, refusal)
        if self.state.draining:
            return service_pb2.ModelReadyResponse(ready=False)
        return await self._call("ModelReady", request, context)

    # -- metadata (authorized) ---------------------------------------------------------------------
    async def _forward_authorized(self, method: str, request: Any, context: grpc.aio.ServicerContext,
                                  model: str | None = None) -> Any:
        """Forward a metadata call once the caller is authorized and, for a model's call, names `ocr`."""
        try:
            self._authorize(context)
            if model is not None:
                self._check_model(model)
        except Refused as refusal:
            await self._refuse(context, refusal)
        return await self._call(method, request, context)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._forward_authorized("ServerMetadata", request, context)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._forward_authorized("ModelMetadata", request, context, request.name)

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._forward_authorized("ModelConfig", request, context, request.name)

    async def ModelStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Statistics of `ocr` only (perf_analyzer reads them); an empty name would list the internal models."""
        model = request.name or MODEL
        request.name = MODEL
        return await self._forward_authorized("ModelStatistics", request, context, model)

    # -- inference ---------------------------------------------------------------------------------
    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        t0 = time.perf_counter()
        metadata = dict((k, v) for k, v in (context.invocation_metadata() or ()) if isinstance(v, str))
        rid = clean_request_id(request.id) or clean_request_id(metadata.get("x-request-id")) or new_request_id()
        request.id = rid
        context.set_trailing_metadata((("x-request-id", rid),))
        fields: dict[str, object] = {"protocol": "grpc", "request_id": rid, "model": request.model_name[:64]}
        code, message = grpc.StatusCode.OK, ""
        try:
            self.state.authorize(metadata.get("authorization"))
            with self.state.admit():
                if self.state.spec is None:
                    meta = await self.upstream.ModelMetadata(service_pb2.ModelMetadataRequest(name=MODEL), timeout=10)
                    self.state.spec = model_spec_from_metadata(MessageToDict(meta, preserving_proto_field_name=True))
                fields["images"] = check_infer_request(request, self.state.spec, self.state.limits)
                response = await self.upstream.ModelInfer(request, timeout=context.time_remaining())
            texts = next((o for o in response.outputs if o.name == "texts"), None)
            fields["lines"] = int(texts.shape[0]) if texts is not None and texts.shape else 0
            return response
        except Refused as refusal:
            code, message = CODES[refusal.kind], refusal.message
        except grpc.aio.AioRpcError as exc:  # Triton's answer, passed on with its code
            code, message = exc.code(), exc.details() or ""
        finally:
            fields["outcome"] = code.name
            if message:
                fields["reason"] = message[:300]
            self.state.log.record(**fields, latency_ms=round((time.perf_counter() - t0) * 1000, 2))
        await context.abort(code, message)


# the methods clients may call, with their message types; the rest (repository, shared memory,
# trace, logging, streaming) is not registered, so gRPC answers UNIMPLEMENTED
METHODS = {
    "ServerLive": (service_pb2.ServerLiveRequest, service_pb2.ServerLiveResponse),
    "ServerReady": (service_pb2.ServerReadyRequest, service_pb2.ServerReadyResponse),
    "ModelReady": (service_pb2.ModelReadyRequest, service_pb2.ModelReadyResponse),
    "ServerMetadata": (service_pb2.ServerMetadataRequest, service_pb2.ServerMetadataResponse),
    "ModelMetadata": (service_pb2.ModelMetadataRequest, service_pb2.ModelMetadataResponse),
    "ModelConfig": (service_pb2.ModelConfigRequest, service_pb2.ModelConfigResponse),
    "ModelStatistics": (service_pb2.ModelStatisticsRequest, service_pb2.ModelStatisticsResponse),
    "ModelInfer": (service_pb2.ModelInferRequest, service_pb2.ModelInferResponse),
}


def _parser(message: Any) -> Callable[[bytes], Any]:
    """Parse a request, or None if the bytes are not that message (gRPC would answer INTERNAL)."""
    def parse(data: bytes) -> Any:
        try:
            return message.FromString(data)
        except DecodeError:
            return None
    return parse


def _guarded(method: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], name: str
             ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {name}Request message")
        return await method(request, context)
    return handle


def build_grpc_server(state: FrontState, address: str, credentials: grpc.ServerCredentials | None
                      ) -> tuple[grpc.aio.Server, grpc.aio.Channel]:
    """The front's gRPC server on `address` (not started) and its channel to Triton."""
    size = state.limits.max_request_bytes
    options = [("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", -1)]
    channel = grpc.aio.insecure_channel(state.upstream.grpc, options=[
        ("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", -1)])
    server = grpc.aio.server(options=options)
    front = GrpcFront(state, channel)
    handlers = {name: grpc.unary_unary_rpc_method_handler(_guarded(getattr(front, name), name),
                                                          request_deserializer=_parser(req),
                                                          response_serializer=resp.SerializeToString)
                for name, (req, resp) in METHODS.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("inference.GRPCInferenceService",
                                                                          handlers),))
    if credentials is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, credentials)
    return server, channel
