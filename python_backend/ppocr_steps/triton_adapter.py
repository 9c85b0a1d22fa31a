"""The one module that talks to Triton's Python backend (`triton_python_backend_utils`).

It can only be imported inside a Triton Python stub. Everything here is plumbing: reading named
tensors, turning exceptions into per-request errors, BLS calls with chunking, and metrics.

Error codes: InvalidInputError → INVALID_ARG; a BLS callee that is not available (its stub died,
it is being reloaded by the watchdog) → UNAVAILABLE, which clients retry; anything else → INTERNAL.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from ppocr_steps.errors import InvalidInputError, one_line
from ppocr_steps.metrics import PROBE_PARAMETER, OcrMetrics, muted

__all__ = ["pb_utils", "model_config", "config_parameters", "input_array", "optional_scalar", "output_dtype",
           "make_response", "error_response", "execute_each", "BlsModel", "ModelUnavailableError",
           "create_metrics", "count_rejections", "is_probe", "log"]

# Substrings of Triton errors that mean "the callee cannot serve right now" (not a bug of the request).
# "Server not ready" / "Server is stopping": BLS calls made while tritonserver shuts down.
UNAVAILABLE_MARKERS = ("is not healthy", "is not ready", "has no available versions", "unknown model",
                       "Stub process", "UNAVAILABLE", "Server not ready", "Server is stopping")


class ModelUnavailableError(RuntimeError):
    """A model called through BLS is unavailable (dead stub, reloading): Triton UNAVAILABLE."""

log = logging.getLogger("ppocr_steps")


SHM_PREFIX = "triton_python_backend_shm_region"


def protect_shared_memory() -> None:
    """Make this stub's /dev/shm region (its argument on the command line) readable by its owner only.

    The Python backend creates it with mode 0644 whatever the umask (boost.interprocess sets the mode
    explicitly), and it holds request tensors (pixels); tritonserver and the stub run as the owner.
    Called at import, before the model serves any request.
    """
    try:
        args = open("/proc/self/cmdline", "rb").read().split(b"\0")
    except OSError:
        return
    for arg in args:
        name = arg.decode(errors="replace")
        if name.startswith(SHM_PREFIX) and "/" not in name:
            try:
                os.chmod(os.path.join("/dev/shm", name), 0o600)
            except OSError as exc:
                log.warning("could not make shared memory %s private: %s", name, exc)


protect_shared_memory()


def model_config(args: Mapping[str, str]) -> dict[str, Any]:
    return json.loads(args["model_config"])


def config_parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """`parameters { key: ... value { string_value: ... } }` → {key: value}."""
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def output_dtype(config: Mapping[str, Any], name: str) -> np.dtype:
    return pb_utils.triton_string_to_numpy(pb_utils.get_output_config_by_name(config, name)["data_type"])


def input_array(request: Any, name: str) -> np.ndarray:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InvalidInputError(f"required input '{name}' is missing", "missing_input")
    return tensor.as_numpy()


def optional_scalar(request: Any, name: str) -> Any:
    """Value of an optional [1]-shaped input, or None when the client did not send it."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    arr = tensor.as_numpy()
    if arr.size != 1:
        raise InvalidInputError(f"input '{name}' must hold exactly one value, got shape {list(arr.shape)}",
                                "bad_parameter")
    value = arr.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value.item() if hasattr(value, "item") else value


def make_response(outputs: Mapping[str, np.ndarray]) -> Any:
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()])


def error_response(exc: BaseException) -> Any:
    if isinstance(exc, InvalidInputError):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))
    if isinstance(exc, ModelUnavailableError):
        log.warning("%s", one_line(str(exc)))
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"temporarily unavailable, retry: {exc}",
                                                                     pb_utils.TritonError.UNAVAILABLE))
    log.error("internal error while serving a request: %s",
              one_line("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))))
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError(f"internal error: {type(exc).__name__}: {exc}", pb_utils.TritonError.INTERNAL))


def is_probe(request: Any) -> bool:
    """Whether `request` is the watchdog's probe (request parameter PROBE_PARAMETER): not counted in metrics."""
    try:
        return bool(json.loads(request.parameters() or "{}").get(PROBE_PARAMETER))
    except (AttributeError, ValueError, TypeError):
        return False


def execute_each(requests: list[Any], handle: Callable[[Any], Mapping[str, np.ndarray]],
                 on_error: Callable[[BaseException], None] | None = None) -> list[Any]:
    """Serve each request independently: one bad request never fails the others. A probe request's
    metric updates are dropped."""
    responses = []
    for request in requests:
        with muted() if is_probe(request) else contextlib.nullcontext():
            try:
                responses.append(make_response(handle(request)))
            except Exception as exc:  # noqa: BLE001 - every failure becomes that request's error
                if on_error is not None:
                    on_error(exc)
                responses.append(error_response(exc))
    return responses


# Metric updates are applied this many seconds later by a background thread, off the request's path
# (each is a round trip to tritonserver; ppocr_steps.metrics).
METRICS_DELAY_S = 0.05


def create_metrics(**kwargs: Any) -> OcrMetrics:
    """The OCR metric families for one model instance (see ppocr_steps.metrics); keep the result."""
    return OcrMetrics(pb_utils, deferred_s=METRICS_DELAY_S, **kwargs)


def count_rejections(metrics: OcrMetrics) -> Callable[[BaseException], None]:
    """An `execute_each(on_error=...)` hook counting INVALID_ARG refusals by reason."""

    def on_error(exc: BaseException) -> None:
        if isinstance(exc, InvalidInputError):
            metrics.rejected(exc.reason)

    return on_error


# Ask for outputs in CPU memory: on the GPU target TensorRT results would otherwise stay on the device.
_CPU_OUTPUT = ({"preferred_memory": pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)}
               if hasattr(pb_utils, "PreferredMemory") else {})


class BlsModel:
    """A runtime model called through BLS in chunks of at most `max_batch` rows.

    Returns the output array, or a tuple of arrays in `output_names` order when there are several.
    `submit(batch)` makes the same call on a worker thread and returns a `wait()` for its result, so
    the caller can prepare its next batch meanwhile (ppocr_steps.recognize.pipelined). Two workers:
    with two calls submitted, the second already waits in the callee's queue when the first ends,
    so the model never idles for a stub round trip. The callee still runs them one after the other (one instance).
    (The stub's `exec()` waits for the response in C++ without holding the GIL.)

    `for_request(request)` gives the same model whose calls belong to `request` in Triton's trace:
    with tracing on (`--trace-config`), they appear as children of that request (`parent_id`); the
    calls of a probe request are tagged as probes too.
    """

    def __init__(self, model_name: str, input_name: str, output_names: list[str], max_batch: int) -> None:
        self.model_name, self.input_name, self.output_names = model_name, input_name, list(output_names)
        self.max_batch = max_batch
        self._worker = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"bls-{model_name}")
        self._request_kwargs: dict[str, Any] = dict(_CPU_OUTPUT)

    def for_request(self, request: Any) -> BlsModel:
        """This model, its calls traced as children of `request` (same workers)."""
        bound = copy.copy(self)
        trace = getattr(request, "trace", None)  # absent in old python backends
        if trace is not None:
            bound._request_kwargs = {**self._request_kwargs, "trace": trace()}
        if is_probe(request):
            bound._request_kwargs = {**bound._request_kwargs, "parameters": {PROBE_PARAMETER: True}}
        return bound

    def submit(self, batch: np.ndarray) -> Callable[[], np.ndarray | tuple[np.ndarray, ...]]:
        return self._worker.submit(self, batch).result

    def __call__(self, batch: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        chunks = [self._run(np.ascontiguousarray(batch[start:start + self.max_batch]))
                  for start in range(0, len(batch), self.max_batch)]
        outs = [c[0] if len(chunks) == 1 else np.concatenate(c) for c in zip(*chunks, strict=True)]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _run(self, chunk: np.ndarray) -> list[np.ndarray]:
        request = pb_utils.InferenceRequest(model_name=self.model_name, requested_output_names=self.output_names,
                                            inputs=[pb_utils.Tensor(self.input_name, chunk)], **self._request_kwargs)
        response = request.exec()
        if response.has_error():
            message = response.error().message()
            if any(m in message for m in UNAVAILABLE_MARKERS):
                raise ModelUnavailableError(f"{self.model_name}: {message}")
            raise RuntimeError(f"{self.model_name}: {message}")
        outs = []
        for name in self.output_names:
            tensor = pb_utils.get_output_tensor_by_name(response, name)
            # GPU-resident outputs (TensorRT, when preferred_memory is not honoured) move through DLPack
            outs.append(tensor.as_numpy() if tensor.is_cpu() else _dlpack_to_numpy(tensor))
        return outs


def _dlpack_to_numpy(tensor: Any) -> np.ndarray:
    import cupy  # only present in GPU images; CPU outputs never reach here

    return cupy.asnumpy(cupy.from_dlpack(tensor.to_dlpack()))
