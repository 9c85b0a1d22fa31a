"""One model repository per server instance, and a lock that keeps a second server off it.

Servers started from one checkout must not share an assembled repository: assembling rewrites it in
place, and a running server (and its watchdog, which reloads models from it) would then serve another
instance's files. Each instance gets a directory keyed by what makes it distinct on a host, and holds
an exclusive lock on it while it runs; the kernel drops the lock when the process dies, however it dies.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from types import TracebackType

__all__ = ["RepositoryInUse", "RepositoryLock", "instance_repository"]


def instance_repository(root: Path, target: str, model_set: str, http_port: int, grpc_port: int,
                        metrics_port: int) -> Path:
    """``root/<target>-<set>-<http>-<grpc>-<metrics>``: servers on other ports or sets never meet."""
    return root / f"{target}-{model_set}-{http_port}-{grpc_port}-{metrics_port}"


class RepositoryInUse(RuntimeError):
    """Another live server holds the repository."""


class RepositoryLock:
    """An exclusive ``flock`` on ``<repository>.lock`` (beside it: assembling replaces the directory).

    ``remove_on_exit`` also deletes the repository and the lock file when the lock is released, for
    repositories the launcher made for itself.
    """

    def __init__(self, repository: Path, remove_on_exit: bool = False) -> None:
        self.repository = repository
        self.path = repository.parent / f"{repository.name}.lock"
        self.remove_on_exit = remove_on_exit
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RepositoryInUse(
                f"model repository {self.repository} is in use by another server (pid {holder}); "
                "give this one other ports or its own --repository") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        if self.remove_on_exit:  # still locked: no other server can be assembling it now
            shutil.rmtree(self.repository, ignore_errors=True)
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RepositoryLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
