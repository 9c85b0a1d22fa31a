"""tritonserver's output, passed on line by line by the launcher minus the lines a CPU-only host always gets.

On a host without a GPU the embedded server prints three error/warning lines about CUDA that no flag
silences (/work/shared/notes/triton-embedded-facts.md §7) and that mean nothing for a CPU server;
an operator who greps logs for errors should not have to learn to ignore them. They are dropped
only for the CPU target (`drop_cuda_noise`); likewise the warning of the HTTP server that a Unix
socket has no TCP_NODELAY (`drop_socket_noise`, with `--socket-dir`). Every other line goes through
unchanged.
"""
from __future__ import annotations

import re
import threading
from typing import IO

__all__ = ["CPU_NOISE", "SOCKET_NOISE", "is_cpu_noise", "forward_lines"]

# The three lines of a CPU-only start that no tritonserver flag silences (messages as Triton 2.51 writes them).
CPU_NOISE = (
    re.compile(rb'^E\d{4} [\d:.]+ +\d+ server\.cc:\d+\] "CudaDriverHelper has not been initialized\."'),
    re.compile(rb'^E\d{4} [\d:.]+ +\d+ ensemble_scheduler\.cc:\d+\] "unable to create stream for [^:]+: '
               rb'CUDA driver version is insufficient'),
    re.compile(rb'^W\d{4} [\d:.]+ +\d+ pinned_memory_manager\.cc:\d+\] "failed to allocate pinned system memory: '
               rb'no pinned memory pool, falling back to non-pinned system memory"'),
)


# libevhtp (Triton's HTTP server) on a Unix socket: TCP_NODELAY does not apply there (colour codes around it).
SOCKET_NOISE = re.compile(rb"^\S*WARN\S*\s+\S*evhtp\.c:\d+\s+\S*NODELAY NOT SUPPORTED")


def is_cpu_noise(line: bytes) -> bool:
    return any(p.match(line) for p in CPU_NOISE)


def forward_lines(source: IO[bytes], sink: IO[bytes], drop_cuda_noise: bool,
                  drop_socket_noise: bool = False) -> threading.Thread:
    """Copy `source` (the server's merged stdout/stderr) to `sink` line by line on a daemon thread, until EOF."""

    def run() -> None:
        with source:
            for line in iter(source.readline, b""):
                if (drop_cuda_noise and is_cpu_noise(line)) or (drop_socket_noise and SOCKET_NOISE.match(line)):
                    continue
                try:
                    sink.write(line)
                    sink.flush()
                except (OSError, ValueError):  # the sink closed: keep draining so the server never blocks
                    pass

    thread = threading.Thread(target=run, name="server-log", daemon=True)
    thread.start()
    return thread
