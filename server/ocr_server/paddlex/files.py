"""The `file` of a PaddleX request: base64 or an allowed URL, and its type (0: PDF, 1: image, from its bytes)."""
from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from ppocr_steps.pdf import is_pdf

__all__ = ["GatewayError", "LoadedFile", "load_file", "FILE_TYPE_PDF", "FILE_TYPE_IMAGE"]

FILE_TYPE_PDF, FILE_TYPE_IMAGE = 0, 1
log = logging.getLogger("ocr_server.paddlex")


class GatewayError(Exception):
    """A request the gateway refuses: HTTP `status` with PaddleX's error body saying what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LoadedFile:
    data: bytes
    file_type: int  # FILE_TYPE_PDF | FILE_TYPE_IMAGE


def _is_url(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))


def _decode_base64(value: str, max_bytes: int) -> bytes:
    text = value.strip()
    if text[:5].lower() == "data:" and ";base64," in text[:200]:
        text = text.split(";base64,", 1)[1]  # a data URL: its payload is the file
    if len(text) * 3 // 4 > max_bytes:
        raise GatewayError(413, f"'file' decodes to more than {max_bytes} bytes; send a smaller file")
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise GatewayError(422, "'file' is neither an http(s) URL nor valid base64; send the file's bytes "
                                "base64-encoded (standard alphabet, with padding)") from None
    if not data:
        raise GatewayError(422, "'file' is empty; send the base64 of an image or PDF file")
    return data


async def _fetch(url: str, allowed_hosts: Collection[str], max_bytes: int, timeout_s: float) -> bytes:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not allowed_hosts:
        raise GatewayError(422, "'file' is a URL, but this gateway fetches no URLs (it was started without "
                                "--allow-url-host); send the file's bytes base64-encoded instead")
    if host not in allowed_hosts:
        raise GatewayError(422, f"'file' is a URL on host {host!r}, which this gateway does not fetch from "
                                f"(allowed: {', '.join(sorted(allowed_hosts))}); send the file base64-encoded")
    try:
        async with httpx.AsyncClient(follow_redirects=False, timeout=timeout_s) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise GatewayError(422, f"fetching 'file' from {url} gave HTTP {response.status_code}; send a "
                                        "URL that serves the file (redirects are not followed) or the file itself")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise GatewayError(413, f"the file at {url} is larger than {max_bytes} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise GatewayError(422, f"fetching 'file' from {url} failed ({type(exc).__name__}); check the URL "
                                "or send the file base64-encoded") from None
    return b"".join(chunks)


async def load_file(value: str, file_type: int | None, allowed_hosts: Collection[str], max_bytes: int,
                    fetch_timeout_s: float) -> LoadedFile:
    """The file's bytes and type; GatewayError for what cannot be used.

    The bytes decide the type: PaddleX's own example client sends fileType 1 whatever the file is,
    and the server reads a PDF as a PDF anyway; a stated type the bytes contradict is only logged.
    """
    if _is_url(value):
        data = await _fetch(value, allowed_hosts, max_bytes, fetch_timeout_s)
    else:
        data = _decode_base64(value, max_bytes)
    kind = FILE_TYPE_PDF if is_pdf(data) else FILE_TYPE_IMAGE
    if file_type is not None and file_type != kind:
        log.info("fileType %s, but the file is %s: read as such", file_type, "a PDF" if kind == FILE_TYPE_PDF
                 else "not a PDF")
    return LoadedFile(data, kind)
