"""Synchronous client of the ``ocr`` ensemble."""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from ._endpoints import EndpointRotation, UrlArg, grpc_target, parse_endpoints
from ._errors import OcrError, OcrTimeoutError, OcrUnavailableError, map_error
from ._images import ImageInput, load_image_bytes
from ._params import OcrParams, build_tensors
from ._results import OcrResult, results_from_outputs, single_result
from ._retry import retry_sync
from ._triton import grpc_channel_args, make_inputs, make_outputs, protocol_module, read_outputs

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "OcrClient"]

log = logging.getLogger("ocr_client")
T = TypeVar("T")

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_HTTP_CLIENT_CACHE = 4  # HTTP clients kept per endpoint, one per distinct per-call timeout
_GRPC = ""  # the key of the one gRPC channel, which balances over every endpoint itself


class _Base:
    """Settings shared by the sync and async clients."""

    def __init__(self, url: UrlArg, protocol: str, model_name: str, timeout: float,
                 retries: int, max_message_bytes: int, auth_token: str | None = None,
                 ssl: bool = False, root_certificates: str | None = None) -> None:
        self.protocol = protocol
        self.endpoints = parse_endpoints(url, protocol)
        self.url = str(self.endpoints)
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries!r}")
        self.model_name = model_name
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.max_message_bytes = int(max_message_bytes)
        self._rotation = EndpointRotation(self.endpoints.addresses) if protocol == "http" else None
        if auth_token is not None and (not auth_token or any(c.isspace() for c in auth_token)):
            raise ValueError("auth_token must be a non-empty token without whitespace")
        self.headers: dict[str, str] = {"authorization": f"Bearer {auth_token}"} if auth_token else {}
        self.ssl = bool(ssl or root_certificates)
        self.root_certificates = root_certificates

    def _tls_kwargs(self) -> dict[str, Any]:
        """tritonclient's TLS arguments (sync clients): the system's CAs, or ``root_certificates`` (a PEM file)."""
        if not self.ssl:
            return {}
        if self.protocol == "grpc":
            return {"ssl": True, "root_certificates": self.root_certificates}
        import gevent.ssl

        options = {"ca_certs": self.root_certificates} if self.root_certificates else {}
        return {"ssl": True, "ssl_options": options, "ssl_context_factory": gevent.ssl.create_default_context}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(url={self.url!r}, protocol={self.protocol!r}, "
                f"model_name={self.model_name!r})")

    def _timeout(self, timeout: float | None) -> float:
        t = self.timeout if timeout is None else float(timeout)
        if t <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        return t

    def _prepare(self, images: Sequence[ImageInput], params: OcrParams) -> tuple[list[Any], list[Any]]:
        """Load/encode images and build (inputs, outputs); local errors raise here."""
        data = [load_image_bytes(im) for im in images]
        return make_inputs(build_tensors(data, params), self.protocol), make_outputs(self.protocol)

    def _pick(self) -> str:
        """The HTTP endpoint for the next attempt (gRPC: the channel's key; it picks per call)."""
        return self._rotation.pick() if self._rotation is not None else _GRPC

    def _all(self) -> tuple[str, ...]:
        """Every endpoint a health probe asks (gRPC: the channel)."""
        return self._rotation.addresses if self._rotation is not None else (_GRPC,)

    def _record(self, address: str, err: OcrError | None) -> None:
        if self._rotation is None:
            return
        if isinstance(err, (OcrUnavailableError, OcrTimeoutError)):  # down, or hung: let the others serve
            self._rotation.failed(address)
            log.debug("endpoint %s failed, resting it: %s", address, err.message)
        elif err is None:
            self._rotation.succeeded(address)

    def _grpc_client(self, mod: Any) -> Any:
        return mod.InferenceServerClient(grpc_target(self.endpoints),
                                         channel_args=grpc_channel_args(self.max_message_bytes),
                                         **self._tls_kwargs())


def _translate(fn: Callable[[], T]) -> T:
    """Run ``fn`` and raise transport errors as :class:`OcrError`."""
    try:
        return fn()
    except Exception as exc:
        err = map_error(exc)
        if err is None or err is exc:
            raise
        raise err from exc


class OcrClient(_Base):
    """Blocking client of the Triton ``ocr`` ensemble (gRPC or HTTP).

    ``url`` is ``host:port`` (default ``localhost:8001`` for gRPC, ``:8000`` for HTTP), several
    endpoints (a list or ``"h1:p1,h2:p2"``), or for gRPC a resolver URI such as
    ``dns:///name:port``; calls are spread round robin over the endpoints that answer.
    ``timeout`` (seconds) is the default deadline of every call, retries on UNAVAILABLE
    (which go to the next endpoint) included. ``auth_token`` is sent as
    ``authorization: Bearer <token>`` (the public front's ``--auth-token-file``); ``ssl`` turns
    on TLS, verified against the system's CAs or ``root_certificates`` (a PEM file; implies
    ``ssl``). Not thread-safe: use one client per thread.
    """

    def __init__(self, url: UrlArg = None, protocol: str = "grpc", model_name: str = "ocr",
                 timeout: float = 30.0, retries: int = 3,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, *, auth_token: str | None = None,
                 ssl: bool = False, root_certificates: str | None = None) -> None:
        super().__init__(url, protocol, model_name, timeout, retries, max_message_bytes, auth_token, ssl,
                         root_certificates)
        # gRPC: one balancing channel under _GRPC; HTTP: one client per (endpoint, timeout)
        self._clients: dict[tuple[str, float], Any] = {}
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> OcrClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        self._closed = True
        clients, self._clients = self._clients, {}
        for c in clients.values():
            try:
                c.close()
            except Exception:  # closing is best effort
                log.debug("error closing the triton client", exc_info=True)

    def _triton(self, timeout: float, address: str) -> Any:
        """The tritonclient client for a call with ``timeout`` to ``address``."""
        if self._closed:
            raise RuntimeError("OcrClient is closed")
        # geventhttpclient fixes socket timeouts per client: one HTTP client per timeout
        key = (address, 0.0 if self.protocol == "grpc" else timeout)
        client = self._clients.get(key)
        if client is None:
            mod = protocol_module(self.protocol, aio=False)
            if self.protocol == "grpc":
                client = self._grpc_client(mod)
            else:
                if len(self._clients) >= _HTTP_CLIENT_CACHE * len(self._all()):
                    oldest = next(iter(self._clients))
                    self._clients.pop(oldest).close()
                client = mod.InferenceServerClient(
                    address, connection_timeout=timeout, network_timeout=timeout, **self._tls_kwargs())
            self._clients[key] = client
        return client

    # ------------------------------------------------------------------ inference
    def ocr(self, image: ImageInput, params: OcrParams | None = None, *, timeout: float | None = None,
            **overrides: Any) -> OcrResult:
        """OCR one image (path, encoded bytes, or OpenCV-style ndarray) or one-page PDF.

        ``params`` and/or keyword ``overrides`` (the :class:`OcrParams` field names) set the
        per-request knobs; ``timeout`` is this call's deadline in seconds, retries included.
        """
        return single_result(self.ocr_batch([image], params, timeout=timeout, **overrides))

    def ocr_document(self, document: ImageInput, params: OcrParams | None = None, *,
                     timeout: float | None = None, **overrides: Any) -> list[OcrResult]:
        """OCR a PDF (or an image): one result per page, in page order (arguments as :meth:`ocr`)."""
        return self.ocr_batch([document], params, timeout=timeout, **overrides)

    def ocr_batch(self, images: Sequence[ImageInput], params: OcrParams | None = None, *,
                  timeout: float | None = None, **overrides: Any) -> list[OcrResult]:
        """OCR several images (or PDFs) in one request; one result per image and per PDF page, in
        input order (``OcrResult.source`` and ``page`` say which; arguments as :meth:`ocr`)."""
        params = OcrParams.merged(params, overrides)
        images = list(images)
        if not images:
            return []
        inputs, outputs = self._prepare(images, params)
        total = self._timeout(timeout)

        def attempt(remaining: float) -> list[OcrResult]:
            address = self._pick()
            try:
                client = self._triton(total, address)
                if self.protocol == "grpc":
                    res = _translate(lambda: client.infer(self.model_name, inputs, outputs=outputs,
                                                          client_timeout=remaining, headers=self.headers))
                else:
                    res = _translate(lambda: client.infer(self.model_name, inputs, outputs=outputs,
                                                          headers=self.headers))
            except OcrError as err:
                self._record(address, err)
                raise
            self._record(address, None)
            return results_from_outputs(read_outputs(res), len(images))

        return retry_sync(attempt, retries=self.retries, timeout=total)

    # ------------------------------------------------------------------ health
    def _probe(self, fn: Callable[[Any, float | None], bool], timeout: float | None) -> bool:
        """Whether ``fn`` holds at some endpoint (gRPC: at the endpoint the channel picks)."""
        t = self._timeout(timeout)
        for address in self._all():
            try:
                client = self._triton(t, address)
                if _translate(functools.partial(fn, client, t if self.protocol == "grpc" else None)):
                    return True
            except OcrError as err:
                log.debug("health probe of %s failed: %s", address or self.url, err)
        return False

    def is_live(self, *, timeout: float | None = None) -> bool:
        """Whether a server answers its liveness probe (False when none is reachable)."""
        return self._probe(lambda c, t: bool(c.is_server_live(**_kw(t))), timeout)

    def is_ready(self, *, timeout: float | None = None) -> bool:
        """Whether a server and its model are ready (False when none is reachable)."""
        return self._probe(lambda c, t: bool(c.is_server_ready(**_kw(t))
                                             and c.is_model_ready(self.model_name, **_kw(t))), timeout)

    def wait_until_ready(self, timeout: float = 60.0, *, interval: float = 0.25) -> None:
        """Poll :meth:`is_ready` until it holds; raise :class:`OcrUnavailableError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        probe_timeout = min(max(timeout, 0.05), 5.0)
        while time.monotonic() < deadline:
            if self.is_ready(timeout=probe_timeout):
                return
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        raise OcrUnavailableError(
            f"model '{self.model_name}' at {self.url} ({self.protocol}) not ready after {timeout:g} s")


def _kw(client_timeout: float | None) -> dict[str, Any]:
    return {} if client_timeout is None else {"client_timeout": client_timeout}

