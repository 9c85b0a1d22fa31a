#!/usr/bin/env python3
"""A rolling restart under load: clients keep sending while the server is stopped (drained) and
started again on the same ports; counts requests sent, failed and the client library's retries.

    .venv/bin/python scripts/rolling_restart.py [--clients 2] [--before 8] [--after 10]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

from ocr_server.local_server import start_fronted, stop_fronted
from ocr_server.paths import REPO_ROOT

from ocr_client import OcrClient, OcrError

SHARED = REPO_ROOT.parent / "shared"


class RetryCounter(logging.Handler):
    """Counts the client library's 'retry' debug records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.counted = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if "retry" in record.getMessage():
            with self.counted:
                self.count += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--before", type=float, default=8.0, help="seconds of load before the stop")
    ap.add_argument("--after", type=float, default=10.0, help="seconds of load after the new server is ready")
    ap.add_argument("--image", type=Path, default=SHARED / "evaldata" / "sroie_receipts_en" / "031.jpg")
    args = ap.parse_args(argv)
    counter = RetryCounter()
    client_log = logging.getLogger("ocr_client")
    client_log.setLevel(logging.DEBUG)
    client_log.addHandler(counter)
    blob = args.image.read_bytes()
    stop = threading.Event()
    outcomes: list[str] = []
    lock = threading.Lock()

    def client(url: str, protocol: str) -> None:
        with OcrClient(url, protocol=protocol, timeout=120, retries=60) as c:
            while not stop.is_set():
                try:
                    c.ocr(blob)
                    outcome = "ok"
                except OcrError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"[:200]
                with lock:
                    outcomes.append(outcome)

    with tempfile.TemporaryDirectory() as tmp:
        server = start_fronted(Path(tmp) / "a")
        ports = [server.http_port, server.grpc_port, server.metrics_port]
        threads = [threading.Thread(target=client, args=((server.grpc_url, "grpc") if i % 2 == 0
                                                         else (server.http_url, "http"))) for i in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(args.before)
        t0 = time.monotonic()
        code = stop_fronted(server)
        stopped = time.monotonic() - t0
        server = start_fronted(Path(tmp) / "b", ports=ports)
        down = time.monotonic() - t0
        time.sleep(args.after)
        stop.set()
        for t in threads:
            t.join(timeout=180)
        stop_fronted(server)
    failed = [o for o in outcomes if o != "ok"]
    print(json.dumps({"clients": args.clients, "sent": len(outcomes), "failed": len(failed),
                      "failures": sorted(set(failed))[:5], "client_retries": counter.count,
                      "launcher_exit": code, "stop_s": round(stopped, 2), "stop_to_ready_s": round(down, 2)},
                     indent=2))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
