"""A small stand-in for the `tensorrt` module, for unit tests on machines without TensorRT.

Covers what ocr_server.engines calls: Logger/ILogger, Builder, OnnxParser (success or scripted errors),
network layers, builder config, optimization profiles, Runtime/engine/context (TensorRT 10
name-based I/O). `install()` puts it in sys.modules['tensorrt']; every call is recorded in
`calls` so tests can assert what the code asked TensorRT to do. The default network is the
detector's (det_input uint8 [-1,-1,-1,3] -> prob_map uint8); `network_io(profile)` gives any model's.
"""
from __future__ import annotations

import enum
import importlib.machinery
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["install", "uninstall", "network_io", "FakeState", "FakeLayer", "FakeTensor", "FakeParserError",
           "FakeCuda"]


class _DataType(enum.Enum):
    FLOAT = "float32"
    HALF = "float16"
    INT32 = "int32"
    INT64 = "int64"
    UINT8 = "uint8"
    BOOL = "bool"


@dataclass
class FakeTensor:
    name: str
    shape: tuple[int, ...] = ()
    dtype: Any = _DataType.FLOAT


@dataclass
class FakeLayer:
    name: str
    type: Any
    outputs: list[FakeTensor] = field(default_factory=list)
    op: Any = None
    precision: Any = None
    output_types: dict[int, Any] = field(default_factory=dict)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_output(self, i: int) -> FakeTensor:
        return self.outputs[i]

    def set_output_type(self, i: int, dtype: Any) -> None:
        self.output_types[i] = dtype


@dataclass
class FakeParserError:
    message: str
    node_index: int = -1
    name: str = ""
    op: str = ""

    def desc(self) -> str:
        return self.message

    def code(self) -> int:
        return 8

    def node(self) -> int:
        return self.node_index

    def node_name(self) -> str:
        return self.name

    def node_operator(self) -> str:
        return self.op


@dataclass
class FakeState:
    """What the fake module was asked to do, and what it should answer."""

    inputs: list[FakeTensor] = field(default_factory=lambda: [FakeTensor("det_input", (-1, -1, -1, 3),
                                                                         _DataType.UINT8)])
    outputs: list[FakeTensor] = field(default_factory=lambda: [FakeTensor("prob_map", (-1, 1, -1, -1),
                                                                          _DataType.UINT8)])
    layers: list[FakeLayer] = field(default_factory=list)
    parser_errors: list[FakeParserError] = field(default_factory=list)
    build_fails: bool = False
    engine_bytes: bytes = b"FAKE-PLAN"
    calls: list[tuple[str, Any]] = field(default_factory=list)
    # runtime: the outputs (an array, or a tuple in `outputs` order) as a function of the input array
    infer: Callable[[Any], Any] | None = None
    cuda: Any = None  # FakeCuda: "device memory" the fake context reads and writes


class FakeCuda:
    """Host dict posing as device memory, with the CudaRuntime methods TrtRunner uses."""

    def __init__(self) -> None:
        self.mem: dict[int, Any] = {}
        self.freed: list[int] = []
        self._next = 4096

    def malloc(self, nbytes: int) -> int:
        self._next += 4096
        self.mem[self._next] = None
        return self._next

    def free(self, ptr: int) -> None:
        self.freed.append(ptr)
        self.mem.pop(ptr, None)

    def h2d(self, dst: int, src: Any) -> None:
        self.mem[dst] = src.copy()

    def d2h(self, dst: Any, src: int) -> None:
        dst[...] = self.mem[src]

    def stream(self) -> int:
        return 1

    def sync(self, stream: int) -> None:
        pass


# the served graphs' non-float outputs (server/ocr_server/onnx_edits.py)
_OUTPUT_TYPES = {"prob_map": _DataType.UINT8, "rec_char_ids": _DataType.INT32}


def network_io(profile: Any) -> tuple[list[FakeTensor], list[FakeTensor]]:
    """(inputs, outputs) of the parsed network of a ModelProfile's graph: -1 where its shape is dynamic."""
    shape = tuple(lo if lo == hi else -1 for lo, hi in zip(profile.min, profile.max, strict=True))
    dtype = _DataType(profile.dtype)
    outputs = [FakeTensor(n, dtype=_OUTPUT_TYPES.get(n, _DataType.FLOAT)) for n in profile.outputs]
    return [FakeTensor(profile.input, shape, dtype)], outputs


def install(state: FakeState | None = None, version: str = "10.4.0") -> tuple[types.ModuleType, FakeState]:
    """Register a fake `tensorrt` in sys.modules; returns (module, state)."""
    st = state or FakeState()
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__ = version  # type: ignore[attr-defined]
    trt.float32, trt.float16, trt.int32, trt.uint8 = (  # type: ignore[attr-defined]
        _DataType.FLOAT, _DataType.HALF, _DataType.INT32, _DataType.UINT8)
    trt.DataType = _DataType  # type: ignore[attr-defined]
    vars(trt).update({  # enums as module attributes (TensorRT's are pybind11 enums)
        "LayerType": enum.Enum("LayerType", "CONVOLUTION ACTIVATION REDUCE SOFTMAX NORMALIZATION UNARY ELEMENTWISE "
                                            "SHUFFLE CONSTANT SHAPE CAST TOPK"),
        "ElementWiseOperation": enum.Enum("ElementWiseOperation", "SUM PROD DIV SUB POW"),
        "BuilderFlag": enum.Enum("BuilderFlag", "FP16 OBEY_PRECISION_CONSTRAINTS"),
        "MemoryPoolType": enum.Enum("MemoryPoolType", "WORKSPACE"),
        "TensorIOMode": enum.Enum("TensorIOMode", "INPUT OUTPUT"),
    })

    class IElementWiseLayer(FakeLayer):
        pass

    trt.IElementWiseLayer = IElementWiseLayer  # type: ignore[attr-defined]

    class ILogger:
        Severity = enum.Enum("Severity", "INTERNAL_ERROR ERROR WARNING INFO VERBOSE")

        def __init__(self) -> None:
            pass

    class Logger(ILogger):
        WARNING = ILogger.Severity.WARNING

        def __init__(self, severity: Any = None) -> None:
            super().__init__()

    trt.ILogger, trt.Logger = ILogger, Logger  # type: ignore[attr-defined]

    class Network:
        num_inputs = property(lambda self: len(st.inputs))
        num_outputs = property(lambda self: len(st.outputs))
        num_layers = property(lambda self: len(st.layers))

        def get_input(self, i: int) -> FakeTensor:
            return st.inputs[i]

        def get_output(self, i: int) -> FakeTensor:
            return st.outputs[i]

        def get_layer(self, i: int) -> FakeLayer:
            return st.layers[i]

    class OnnxParser:
        def __init__(self, network: Network, logger: Any) -> None:
            self.logger = logger

        def parse_from_file(self, path: str) -> bool:
            st.calls.append(("parse_from_file", path))
            for e in st.parser_errors:
                self.logger.log(ILogger.Severity.ERROR, e.message)
            return not st.parser_errors

        num_errors = property(lambda self: len(st.parser_errors))

        def get_error(self, i: int) -> FakeParserError:
            return st.parser_errors[i]

    class Profile:
        def set_shape(self, name: str, mn: Any, opt: Any, mx: Any) -> None:
            st.calls.append(("set_shape", (name, tuple(mn), tuple(opt), tuple(mx))))

    class TimingCache:
        def serialize(self) -> bytes:
            return b"CACHE"

    class Config:
        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            st.calls.append(("set_memory_pool_limit", (pool.name, size)))

        def set_flag(self, flag: Any) -> None:
            st.calls.append(("set_flag", flag.name))

        def add_optimization_profile(self, p: Profile) -> int:
            st.calls.append(("add_optimization_profile", None))
            return 0

        def create_timing_cache(self, blob: bytes) -> TimingCache:
            return TimingCache()

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            return True

    class Builder:
        platform_has_fast_fp16 = True

        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            st.calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            st.calls.append(("build_serialized_network", None))
            if st.build_fails:
                self.logger.log(ILogger.Severity.ERROR, "fake builder: out of memory")
                return None
            return st.engine_bytes

    trt.Builder, trt.OnnxParser = Builder, OnnxParser  # type: ignore[attr-defined]

    def run(x: Any) -> dict[str, Any]:
        y = st.infer(x)  # type: ignore[misc]
        return dict(zip([t.name for t in st.outputs], y if isinstance(y, tuple) else (y,), strict=True))

    class Context:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addr: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            import numpy as np  # noqa: PLC0415
            x = st.inputs[0]
            return tuple(run(np.zeros(self.shapes[x.name], nptype(x.dtype)))[name].shape)

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addr[name] = ptr
            return True

        def execute_async_v3(self, stream: int) -> bool:
            x = st.cuda.mem[self.addr[st.inputs[0].name]]
            st.calls.append(("execute", (x.dtype.name, x.shape)))
            for name, y in run(x).items():
                st.cuda.mem[self.addr[name]] = y
            return True

    class Engine:
        num_io_tensors = property(lambda self: len(st.inputs) + len(st.outputs))

        def get_tensor_name(self, i: int) -> str:
            return (st.inputs + st.outputs)[i].name

        def get_tensor_mode(self, name: str) -> Any:
            return trt.TensorIOMode.INPUT if name in [t.name for t in st.inputs] else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Any:
            return next(t.dtype for t in st.inputs + st.outputs if t.name == name)

        def create_execution_context(self) -> Context:
            return Context()

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, blob: bytes) -> Engine | None:
            return Engine() if blob == st.engine_bytes else None

    trt.Runtime = Runtime  # type: ignore[attr-defined]

    def nptype(dtype: Any) -> Any:
        import numpy as np  # noqa: PLC0415
        return np.dtype(dtype.value).type

    trt.nptype = nptype  # type: ignore[attr-defined]
    sys.modules["tensorrt"] = trt
    return trt, st


def uninstall() -> None:
    sys.modules.pop("tensorrt", None)
