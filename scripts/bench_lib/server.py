"""The benchmark's server: the same throw-away tritonserver the integration tests use.

(server/ocr_server/local_server.py)
"""
from __future__ import annotations

from ocr_server.local_server import RunningServer, free_port, start_server, stop_server

__all__ = ["RunningServer", "free_port", "start_server", "stop_server"]
