"""The watchdog's probe bookkeeping (launch_server.Supervisor.probe_once), without a server.

The probe's request is answered by a stand-in gRPC client so that the test controls when the answer
arrives relative to a heal; the end-to-end behaviour with a real tritonserver is in
tests/integration/test_faults.py.
"""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

from ocr_server.launcher import ServerOptions, Supervisor  # noqa: E402

NOT_HEALTHY = "in ensemble 'ocr', internal error: det_preprocess: Stub process 'det_preprocess_0_0' is not healthy."


class ProbeAnswer:
    """Stands in for tritonclient.grpc.InferenceServerClient: `infer` waits for `release`, then fails
    with `error` (or succeeds when it is None)."""

    error: str | None = None
    release = threading.Event()

    def __init__(self, url: str) -> None:
        pass

    def __enter__(self) -> ProbeAnswer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def infer(self, *args: object, **kwargs: object) -> None:
        from tritonclient.utils import InferenceServerException

        assert ProbeAnswer.release.wait(10)
        if ProbeAnswer.error is not None:
            status = "StatusCode.DEADLINE_EXCEEDED" if "Deadline" in ProbeAnswer.error else "StatusCode.INTERNAL"
            raise InferenceServerException(ProbeAnswer.error, status=status)


@pytest.fixture
def watchdog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Supervisor:
    import tritonclient.grpc as grpcclient

    monkeypatch.setattr(grpcclient, "InferenceServerClient", ProbeAnswer)
    ProbeAnswer.release = threading.Event()
    return Supervisor(ServerOptions(tmp_path, admin_key="k"))


def probe_answered_after(watchdog: Supervisor, error: str | None, meanwhile) -> None:
    """Run one probe whose answer arrives after `meanwhile()` has run."""
    ProbeAnswer.error = error
    t = threading.Thread(target=watchdog.probe_once)
    t.start()
    meanwhile()
    ProbeAnswer.release.set()
    t.join(10)
    assert not t.is_alive()


def test_an_unhealthy_stub_is_reported(watchdog: Supervisor) -> None:
    probe_answered_after(watchdog, NOT_HEALTHY, lambda: None)
    assert watchdog.unhealthy == {"det_preprocess"}


def test_a_failure_that_names_no_stub_is_only_logged(watchdog: Supervisor) -> None:
    probe_answered_after(watchdog, "model 'ocr' is not ready", lambda: None)
    assert watchdog.unhealthy == set() and watchdog.probe_timeouts == 0


def test_an_answer_from_before_a_heal_is_ignored(watchdog: Supervisor) -> None:
    """The probe was in flight when the stub died; it fails after the heal: no second heal."""
    probe_answered_after(watchdog, NOT_HEALTHY, watchdog.forget_probe_results)
    assert watchdog.unhealthy == set()


def test_an_answer_during_a_heal_is_ignored(watchdog: Supervisor) -> None:
    probe_answered_after(watchdog, NOT_HEALTHY, watchdog.paused.set)
    assert watchdog.unhealthy == set()


def test_timeouts_count_until_a_probe_succeeds_or_a_restart(watchdog: Supervisor) -> None:
    for n in (1, 2):
        ProbeAnswer.release = threading.Event()
        probe_answered_after(watchdog, "Deadline Exceeded", lambda: None)
        assert watchdog.probe_timeouts == n
    ProbeAnswer.release = threading.Event()
    probe_answered_after(watchdog, "Deadline Exceeded", watchdog.forget_probe_results)
    assert watchdog.probe_timeouts == 0  # the restart reset the count; the late timeout is not added
    ProbeAnswer.release = threading.Event()
    probe_answered_after(watchdog, "Deadline Exceeded", lambda: None)
    ProbeAnswer.release = threading.Event()
    probe_answered_after(watchdog, None, lambda: None)
    assert watchdog.probe_timeouts == 0


class FakeServer:
    pid = 1

    def poll(self) -> None:
        return None


@pytest.mark.parametrize("completed, restarted", [(15, False), (10, True), (None, True)])
def test_probe_timeouts_restart_only_a_server_that_completes_nothing(
        watchdog: Supervisor, monkeypatch: pytest.MonkeyPatch, completed: int | None, restarted: bool) -> None:
    """Probes stuck behind a backlog time out, but the ensemble kept answering: busy, not stuck."""
    restarts: list[str] = []
    watchdog.proc = FakeServer()  # type: ignore[assignment]
    monkeypatch.setattr(watchdog, "dead_models", lambda: set())
    monkeypatch.setattr(watchdog, "restart_server", restarts.append)
    monkeypatch.setattr(watchdog, "completed_requests", lambda: completed)
    watchdog.probe_timeouts, watchdog.progress_mark = watchdog.probe_failures, 10
    watchdog.check()
    assert bool(restarts) == restarted
    assert watchdog.probe_timeouts == (watchdog.probe_failures if restarted else 0)


def test_the_probe_is_tagged_and_its_failures_counted(watchdog: Supervisor, monkeypatch: pytest.MonkeyPatch) -> None:
    from ppocr_steps.metrics import PROBE_PARAMETER

    seen: dict = {}

    def infer(self: ProbeAnswer, *args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise __import__("tritonclient.utils", fromlist=["x"]).InferenceServerException(
            "Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED")

    monkeypatch.setattr(ProbeAnswer, "infer", infer)
    monkeypatch.setattr(watchdog, "completed_requests", lambda: 7)
    watchdog.probe_once()
    assert seen["parameters"] == {PROBE_PARAMETER: True}
    assert watchdog.probe_timeouts == 1 and watchdog.progress_mark == 7
    assert watchdog.metrics.probe_failures._value.get() == 1
