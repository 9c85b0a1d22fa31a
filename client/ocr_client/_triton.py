"""The only module that knows tritonclient's request/response objects."""
from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from typing import Any

from numpy.typing import NDArray

from ._endpoints import DEFAULT_PORTS, PROTOCOLS, RECONNECT_BACKOFF_S, UrlArg, parse_endpoints
from ._params import Tensor
from ._results import OUTPUT_NAMES

__all__ = [
    "DEFAULT_PORTS",
    "INT32_MAX",
    "PROTOCOLS",
    "grpc_channel_args",
    "make_inputs",
    "make_outputs",
    "protocol_module",
    "read_outputs",
    "resolve_url",
]

INT32_MAX = 2**31 - 1
# round_robin spreads calls over every address of the target and skips those not connected
_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def resolve_url(url: UrlArg, protocol: str) -> str:
    """The endpoints of ``url`` as one display string (see :func:`parse_endpoints`)."""
    return str(parse_endpoints(url, protocol))


def protocol_module(protocol: str, aio: bool) -> Any:
    """``tritonclient.{grpc,http}[.aio]``, imported lazily (http pulls in gevent)."""
    name = f"tritonclient.{protocol}" + (".aio" if aio else "")
    return importlib.import_module(name)


def grpc_channel_args(max_message_bytes: int) -> list[tuple[str, int | str]]:
    """tritonclient's default channel options with our message size limit, balancing and reconnects."""
    size = min(int(max_message_bytes), INT32_MAX)
    first, longest = RECONNECT_BACKOFF_S
    return [
        ("grpc.max_send_message_length", size),
        ("grpc.max_receive_message_length", size),
        ("grpc.keepalive_time_ms", INT32_MAX),
        ("grpc.keepalive_timeout_ms", 20000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 2),
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.initial_reconnect_backoff_ms", int(first * 1000)),
        ("grpc.min_reconnect_backoff_ms", int(first * 1000)),
        ("grpc.max_reconnect_backoff_ms", int(longest * 1000)),
    ]


def make_inputs(tensors: Sequence[Tensor], protocol: str) -> list[Any]:
    """``InferInput`` objects for ``tensors`` (HTTP ones use the binary extension)."""
    mod = protocol_module(protocol, aio=False)  # aio modules re-export the same classes
    inputs = []
    for t in tensors:
        inp = mod.InferInput(t.name, list(t.data.shape), t.datatype)
        if protocol == "http":
            inp.set_data_from_numpy(t.data, binary_data=True)
        else:
            inp.set_data_from_numpy(t.data)
        inputs.append(inp)
    return inputs


def make_outputs(protocol: str) -> list[Any]:
    """``InferRequestedOutput`` for every output the client reads."""
    mod = protocol_module(protocol, aio=False)
    if protocol == "http":
        return [mod.InferRequestedOutput(n, binary_data=True) for n in OUTPUT_NAMES]
    return [mod.InferRequestedOutput(n) for n in OUTPUT_NAMES]


def read_outputs(result: Any) -> dict[str, NDArray[Any] | None]:
    """The output arrays of an ``InferResult`` (None where an output is missing)."""
    return {name: result.as_numpy(name) for name in OUTPUT_NAMES}
