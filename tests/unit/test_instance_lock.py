"""Several server instances on one host: own repositories, the lock, and whose stubs are orphans."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ocr_server import serve
from ocr_server.instance import RepositoryInUse, RepositoryLock, instance_repository
from ocr_server.launcher import proc_stat, serves_another_server


def test_instance_repository_is_keyed_by_target_set_and_ports(tmp_path: Path) -> None:
    a = instance_repository(tmp_path, "cpu", "v4", 8000, 8001, 8002)
    assert a == tmp_path / "cpu-v4-8000-8001-8002"
    others = {instance_repository(tmp_path, *key) for key in [
        ("cpu", "v5", 8000, 8001, 8002), ("gpu", "v4", 8000, 8001, 8002), ("cpu", "v4", 28000, 8001, 8002),
        ("cpu", "v4", 8000, 28001, 8002), ("cpu", "v4", 8000, 8001, 28002)]}
    assert len(others) == 5 and a not in others


def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    with RepositoryLock(repo):
        with pytest.raises(RepositoryInUse, match=f"pid {os.getpid()}"):
            RepositoryLock(repo).acquire()
    with RepositoryLock(repo):  # released: free again
        pass


def test_lock_removes_an_own_repository_on_release(tmp_path: Path) -> None:
    repo = tmp_path / "own"
    lock = RepositoryLock(repo, remove_on_exit=True)
    lock.acquire()
    (repo / "ocr").mkdir(parents=True)
    lock.release()
    assert not repo.exists() and not lock.path.exists()
    kept = tmp_path / "given"
    with RepositoryLock(kept):
        kept.mkdir()
    assert kept.exists()


def test_ocr_serve_refuses_a_repository_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "marker").write_text("the running server's files")
    with RepositoryLock(repo):
        assert serve.main(["--repository", str(repo), "--setup-only"]) == 2
    assert "in use by another server" in capsys.readouterr().err
    assert (repo / "marker").read_text() == "the running server's files"  # not reassembled


def test_a_stub_of_another_live_server_is_never_an_orphan(tmp_path: Path) -> None:
    """A process whose parent is a live `tritonserver` other than ours belongs to that server."""
    fake_server = tmp_path / "tritonserver"
    fake_server.symlink_to("/bin/sh")  # argv[0] ends with "tritonserver", as the real one's does
    parent = subprocess.Popen([str(fake_server), "-c", "sleep 30 & wait"])
    child = None
    try:
        deadline = time.monotonic() + 10
        while child is None and time.monotonic() < deadline:
            child = next((int(e.name) for e in os.scandir("/proc") if e.name.isdigit()
                          and (proc_stat(int(e.name)) or ("", -1))[1] == parent.pid), None)
            time.sleep(0.02)
        assert child is not None
        assert serves_another_server(child, server_pid=None) is True
        assert serves_another_server(child, server_pid=12345678) is True
        assert serves_another_server(child, server_pid=parent.pid) is False  # our own server's child
        assert serves_another_server(parent.pid, server_pid=None) is False  # its parent is pytest
    finally:
        if child is not None:
            os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()
