"""A small stand-in for Triton's `triton_python_backend_utils`, for unit tests of the Python models.

Covers what ppocr_steps.triton_adapter, ppocr_steps.metrics and the model.py files use: Tensor,
InferenceRequest (with `exec()` dispatched to callees registered in `bls`), InferenceResponse,
TritonError with its codes, get_input/output_tensor_by_name, get_output_config_by_name,
triton_string_to_numpy, MetricFamily and PreferredMemory. `install(monkeypatch)` puts it in
sys.modules['triton_python_backend_utils'] for one test; every BLS call is recorded in `calls`.
"""
from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["install", "Tensor", "InferenceRequest", "InferenceResponse", "TritonError", "MetricFamily"]


class TritonError(Exception):
    # the codes of the python backend's TritonError
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class Tensor:
    def __init__(self, name: str, array: Any) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def is_cpu(self) -> bool:
        return True


class InferenceResponse:
    def __init__(self, output_tensors: Sequence[Tensor] = (), error: TritonError | None = None) -> None:
        self._outputs, self._error = list(output_tensors), error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def outputs(self) -> dict[str, np.ndarray]:
        """Test helper: {name: array} of a successful response."""
        assert self._error is None, self._error.message()
        return {t.name(): t.as_numpy() for t in self._outputs}


# callee model name -> handler(request) -> InferenceResponse; what `InferenceRequest.exec()` calls
bls: dict[str, Callable[[InferenceRequest], InferenceResponse]] = {}
calls: list[InferenceRequest] = []


class InferenceRequest:
    def __init__(self, model_name: str = "", requested_output_names: Sequence[str] = (),
                 inputs: Sequence[Tensor] = (), **kwargs: Any) -> None:
        self.model_name, self.requested_output_names = model_name, list(requested_output_names)
        self._inputs, self.kwargs = list(inputs), kwargs

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def exec(self) -> InferenceResponse:
        calls.append(self)
        handler = bls.get(self.model_name)
        if handler is None:  # Triton's wording for a model that is not loaded
            return InferenceResponse(error=TritonError(f"Failed for execute the inference request. Model "
                                                       f"'{self.model_name}' is not ready."))
        return handler(self)


def request(**inputs: Any) -> InferenceRequest:
    """Test helper: a client request with these named inputs."""
    return InferenceRequest(inputs=[Tensor(name, value) for name, value in inputs.items()])


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


def get_output_config_by_name(config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((o for o in config.get("output", []) if o["name"] == name), None)


_DTYPES = {"TYPE_BOOL": np.bool_, "TYPE_UINT8": np.uint8, "TYPE_INT32": np.int32, "TYPE_INT64": np.int64,
           "TYPE_FP16": np.float16, "TYPE_FP32": np.float32, "TYPE_STRING": np.object_}


def triton_string_to_numpy(name: str) -> Any:
    return _DTYPES[name]


class _Metric:
    def __init__(self, labels: dict[str, str], buckets: list[float] | None) -> None:
        self.labels, self.buckets, self.value = labels, buckets, 0.0
        self.observations: list[float] = []

    def increment(self, value: float) -> None:
        self.value += value

    def set(self, value: float) -> None:
        self.value = value

    def observe(self, value: float) -> None:
        self.observations.append(value)


class MetricFamily:
    COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
    families: dict[str, MetricFamily] = {}

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name, self.description, self.kind = name, description, kind
        self.metrics: list[_Metric] = []
        MetricFamily.families[name] = self

    def Metric(self, labels: dict[str, str] | None = None, buckets: list[float] | None = None) -> _Metric:  # noqa: N802
        metric = _Metric(dict(labels or {}), buckets)
        self.metrics.append(metric)
        return metric


class PreferredMemory:
    def __init__(self, kind: int, device_id: int = 0) -> None:
        self.kind, self.device_id = kind, device_id


TRITONSERVER_MEMORY_CPU = 0


def install(monkeypatch: Any) -> types.ModuleType:
    """Make this module `triton_python_backend_utils` for one test (fresh BLS table, calls and metrics),
    and re-import ppocr_steps.triton_adapter against it; `monkeypatch` undoes both."""
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "bls", {})
    monkeypatch.setattr(module, "calls", [])
    monkeypatch.setattr(MetricFamily, "families", {})
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    import ppocr_steps  # noqa: PLC0415

    # triton_adapter binds pb_utils at import: import it afresh; the placeholders make the undo restore
    # (or remove) what was there before
    name = "ppocr_steps.triton_adapter"
    monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(ppocr_steps, "triton_adapter", None, raising=False)
    del sys.modules[name]
    importlib.import_module(name)
    return module
