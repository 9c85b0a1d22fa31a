"""The only module that knows tritonclient's request/response objects."""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from numpy.typing import NDArray

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

PROTOCOLS = ("grpc", "http")
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
INT32_MAX = 2**31 - 1


def resolve_url(url: str | None, protocol: str) -> str:
    """``host:port`` for ``protocol``; None gives ``localhost:<default port>``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if url is None:
        return f"localhost:{DEFAULT_PORTS[protocol]}"
    if "://" in url:
        raise ValueError(f"url must be HOST:PORT without a scheme, got {url!r} "
                         f"(e.g. 'localhost:{DEFAULT_PORTS[protocol]}')")
    return url


def protocol_module(protocol: str, aio: bool) -> Any:
    """``tritonclient.{grpc,http}[.aio]``, imported lazily (http pulls in gevent)."""
    name = f"tritonclient.{protocol}" + (".aio" if aio else "")
    return importlib.import_module(name)


def grpc_channel_args(max_message_bytes: int) -> list[tuple[str, int]]:
    """tritonclient's default channel options with our message size limit."""
    size = min(int(max_message_bytes), INT32_MAX)
    return [
        ("grpc.max_send_message_length", size),
        ("grpc.max_receive_message_length", size),
        ("grpc.keepalive_time_ms", INT32_MAX),
        ("grpc.keepalive_timeout_ms", 20000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 2),
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
