"""The benchmark's server: the same throw-away tritonserver the integration tests use (scripts/local_server.py)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from local_server import RunningServer, free_port, start_server, stop_server  # noqa: E402

__all__ = ["RunningServer", "free_port", "start_server", "stop_server"]
