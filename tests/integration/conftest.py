"""A real tritonserver (embedded CPU target) started once per test session on free ports."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # pdf_samples

from helpers import EVALDATA  # noqa: E402
from ocr_server.local_server import RunningServer, start_server, stop_server  # noqa: E402,F401


@pytest.fixture(scope="session")
def trace_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session server writes Triton traces; tracing is off until a test turns it on."""
    return tmp_path_factory.mktemp("trace") / "trace.json"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, trace_file: Path):
    """The default server (v4 models, repository defaults)."""
    srv = start_server(tmp_path_factory.mktemp("triton"), timeout=180,
                       extra_args=["--trace-config", f"triton,file={trace_file}", "--trace-config", "level=OFF"])
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def client(server: RunningServer):
    from ocr_client import OcrClient

    with OcrClient(server.grpc_url, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def evaldata() -> Path:
    if not (EVALDATA / "sroie_receipts_en" / "labels.jsonl").exists():
        pytest.skip(f"evaluation data not found at {EVALDATA} (set OCR_SHARED_DIR)")
    return EVALDATA


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def fronted(tmp_path_factory: pytest.TempPathFactory):
    """A supervised server behind the public front (the way serve.sh runs it)."""
    from ocr_server.local_server import start_fronted, stop_fronted

    srv = start_fronted(tmp_path_factory.mktemp("fronted"))
    yield srv
    stop_fronted(srv)
