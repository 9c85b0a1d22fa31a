"""Run a single-input engine (one or more outputs) on numpy arrays (for the FP16 gate).

Device memory through the CUDA runtime via ctypes (no pycuda / cuda-python needed); TensorRT 10
name-based I/O (`set_input_shape`, `set_tensor_address`, `execute_async_v3`).
"""
from __future__ import annotations

import ctypes
import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ocr_server.engines.builder import BuildError, import_tensorrt

__all__ = ["CudaRuntime", "TrtRunner"]

_H2D, _D2H = 1, 2


class CudaRuntime:
    """The few libcudart calls the runner needs."""

    def __init__(self) -> None:
        names = ["libcudart.so", "libcudart.so.12", "libcudart.so.11.0",
                 *sorted(glob.glob("/usr/local/cuda*/lib64/libcudart.so*"))]
        for name in names:
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise BuildError("libcudart is not loadable: the FP16 gate needs the CUDA runtime (present in the NGC "
                             "images; elsewhere add /usr/local/cuda/lib64 to LD_LIBRARY_PATH)")
        self.lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        self.lib.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.lib.cudaFree.argtypes = [ctypes.c_void_p]
        self.lib.cudaStreamCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        self.lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        self.lib.cudaStreamDestroy.argtypes = [ctypes.c_void_p]

    def check(self, rc: int, what: str) -> None:
        if rc != 0:
            self.lib.cudaGetErrorString.restype = ctypes.c_char_p
            raise BuildError(f"CUDA error {rc} in {what}: {self.lib.cudaGetErrorString(rc).decode()}")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(ptr), max(int(nbytes), 1)), f"cudaMalloc({nbytes})")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        self.lib.cudaFree(ctypes.c_void_p(ptr))

    def h2d(self, dst: int, src: Any) -> None:
        self.check(self.lib.cudaMemcpy(ctypes.c_void_p(dst), ctypes.c_void_p(src.ctypes.data), src.nbytes, _H2D),
                   "cudaMemcpy H2D")

    def d2h(self, dst: Any, src: int) -> None:
        self.check(self.lib.cudaMemcpy(ctypes.c_void_p(dst.ctypes.data), ctypes.c_void_p(src), dst.nbytes, _D2H),
                   "cudaMemcpy D2H")

    def stream(self) -> int:
        s = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(s)), "cudaStreamCreate")
        return int(s.value or 0)

    def sync(self, stream: int) -> None:
        self.check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")


class TrtRunner:
    """Deserialize a plan and run it: `runner(x) -> y` for the engine's single input.

    `y` is the output array, or a tuple of them (in `outputs` order, default the engine's) when the
    engine has several (rec_model: rec_char_ids INT32, rec_char_probs FP32). Arrays keep the engine's
    data types; `x` is converted to the input's type (det_model: uint8).
    """

    def __init__(self, plan: Path, cuda: CudaRuntime | None = None, outputs: Sequence[str] | None = None) -> None:
        self.trt = trt = import_tensorrt()
        self.cuda = cuda or CudaRuntime()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(plan).read_bytes())
        if self.engine is None:
            raise BuildError(f"cannot deserialize {plan}: built by another TensorRT version or for another GPU")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        found = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not found:
            raise BuildError(f"{plan}: expected one input and at least one output, got {inputs} / {found}")
        if outputs is not None and sorted(outputs) != sorted(found):
            raise BuildError(f"{plan}: outputs {found}, expected {list(outputs)} (built from another graph: rebuild)")
        self.input, self.outputs = inputs[0], list(outputs or found)
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.stream()

    def _dtype(self, name: str) -> Any:
        return self.trt.nptype(self.engine.get_tensor_dtype(name))

    def __call__(self, x: Any) -> Any:
        import numpy as np  # noqa: PLC0415
        x = np.ascontiguousarray(x, dtype=self._dtype(self.input))
        if not self.context.set_input_shape(self.input, tuple(x.shape)):
            raise BuildError(f"input shape {x.shape} is outside the engine's optimization profile")
        outs = [np.empty(tuple(self.context.get_tensor_shape(n)), dtype=self._dtype(n)) for n in self.outputs]
        d_in = self.cuda.malloc(x.nbytes)
        d_outs: list[int] = []
        try:
            d_outs = [self.cuda.malloc(o.nbytes) for o in outs]
            self.cuda.h2d(d_in, x)
            self.context.set_tensor_address(self.input, d_in)
            for name, ptr in zip(self.outputs, d_outs, strict=True):
                self.context.set_tensor_address(name, ptr)
            if not self.context.execute_async_v3(self.stream):
                raise BuildError("execute_async_v3 failed (see the TensorRT log above)")
            self.cuda.sync(self.stream)
            for out, ptr in zip(outs, d_outs, strict=True):
                self.cuda.d2h(out, ptr)
        finally:
            for ptr in (d_in, *d_outs):
                self.cuda.free(ptr)
        return outs[0] if len(outs) == 1 else tuple(outs)
