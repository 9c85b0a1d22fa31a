"""Several server endpoints: parsing, the gRPC target that balances over them, and HTTP rotation.

gRPC balances inside one channel (round_robin over every resolved address, with failed
subchannels out of the rotation until they reconnect); HTTP has no such layer in tritonclient,
so :class:`EndpointRotation` picks the endpoint per attempt and rests a failed one.
"""
from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._errors import OcrUnavailableError

__all__ = [
    "DEFAULT_PORTS",
    "GRPC_SCHEMES",
    "PROTOCOLS",
    "RECONNECT_BACKOFF_S",
    "EndpointRotation",
    "Endpoints",
    "UrlArg",
    "grpc_target",
    "parse_endpoints",
]

PROTOCOLS = ("grpc", "http")
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
GRPC_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:")  # gRPC name-resolver URIs, passed to gRPC as they are
RECONNECT_BACKOFF_S = (1.0, 10.0)  # first and longest rest of a failed endpoint (gRPC and HTTP alike)

UrlArg = str | Sequence[str] | None


@dataclass(frozen=True)
class Endpoints:
    """Where a client sends requests: ``host:port`` addresses, or one gRPC resolver URI."""

    addresses: tuple[str, ...]
    resolver_uri: str | None = None

    def __str__(self) -> str:
        return self.resolver_uri or ",".join(self.addresses)


def parse_endpoints(url: UrlArg, protocol: str) -> Endpoints:
    """The endpoints named by ``url``.

    ``url`` is ``host:port``, several of them as a list or comma-separated, or (gRPC only) a
    resolver URI such as ``dns:///name:port`` or ``ipv4:10.0.0.1:8001,10.0.0.2:8001``.
    None gives ``localhost:<default port>``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if url is None:
        return Endpoints((f"localhost:{DEFAULT_PORTS[protocol]}",))
    if isinstance(url, str):
        if url.startswith(GRPC_SCHEMES):
            if protocol != "grpc":
                raise ValueError(f"{url!r} is a gRPC resolver URI; HTTP takes HOST:PORT[,HOST:PORT...]")
            return Endpoints((), url)
        items = url.split(",")
    else:
        items = list(url)
    addresses: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"url entries must be str, got {type(item).__name__}")
        address = item.strip()
        if "://" in address or address.startswith(GRPC_SCHEMES):
            raise ValueError(f"url must be HOST:PORT without a scheme, got {item!r} "
                             f"(e.g. 'localhost:{DEFAULT_PORTS[protocol]}'; a gRPC resolver URI such as "
                             "'dns:///name:port' must be the whole url)")
        if not address:
            raise ValueError(f"empty endpoint in url {url!r}")
        if address not in addresses:
            addresses.append(address)
    if len(addresses) > 1:
        for a in addresses:
            _split(a)  # several endpoints: each needs its port
    return Endpoints(tuple(addresses))


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"endpoint must be HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def grpc_target(endpoints: Endpoints,
                resolve: Callable[[str, int], list[tuple[int, str]]] | None = None) -> str:
    """The target of one gRPC channel that reaches every endpoint.

    One address goes to gRPC's DNS resolver as it is (a name with several addresses is balanced
    and re-resolved by gRPC). Several addresses become one ``ipv4:``/``ipv6:`` address list;
    names among them are resolved here, once, into the family that every endpoint has.
    """
    if endpoints.resolver_uri is not None:
        return endpoints.resolver_uri
    if len(endpoints.addresses) == 1:
        return endpoints.addresses[0]
    resolve = resolve or _resolve
    per_endpoint: list[list[tuple[int, str]]] = []
    for address in endpoints.addresses:
        host, port = _split(address)
        try:
            ip = ipaddress.ip_address(host)
            per_endpoint.append([(ip.version, f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}")])
        except ValueError:  # a name
            per_endpoint.append(resolve(host, port))
    for version in (4, 6):
        if all(any(v == version for v, _ in found) for found in per_endpoint):
            picked = dict.fromkeys(a for found in per_endpoint for v, a in found if v == version)
            return f"ipv{version}:" + ",".join(picked)
    raise ValueError(f"the endpoints {endpoints} do not share an address family (IPv4 or IPv6); "
                     "list addresses of one family")


def _resolve(host: str, port: int) -> list[tuple[int, str]]:
    """``(ip version, "ip:port")`` for every TCP address of ``host``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OcrUnavailableError(f"cannot resolve {host!r}: {exc.strerror or exc}") from exc
    out: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in infos:
        if family == socket.AF_INET:
            out.append((4, f"{sockaddr[0]}:{port}"))
        elif family == socket.AF_INET6:
            out.append((6, f"[{sockaddr[0]}]:{port}"))
    return out


class EndpointRotation:
    """Round robin over addresses for protocols without client-side balancing (HTTP).

    An address that failed (unavailable, or no answer in time) rests, 1 s doubling to 10 s while it
    keeps failing, and is skipped meanwhile; when every address rests, the one due first is tried.
    """

    def __init__(self, addresses: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        if not addresses:
            raise ValueError("no endpoints")
        self.addresses = tuple(addresses)
        self._clock = clock
        self._next = 0
        self._failures: dict[str, int] = {}
        self._resting_until: dict[str, float] = {}

    def pick(self) -> str:
        now = self._clock()
        n = len(self.addresses)
        for i in range(n):
            address = self.addresses[(self._next + i) % n]
            if self._resting_until.get(address, 0.0) <= now:
                self._next = (self._next + i + 1) % n
                return address
        return min(self.addresses, key=lambda a: self._resting_until[a])

    def failed(self, address: str) -> None:
        count = self._failures.get(address, 0)
        first, longest = RECONNECT_BACKOFF_S
        self._failures[address] = count + 1
        self._resting_until[address] = self._clock() + min(longest, first * 2.0 ** count)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
        self._resting_until.pop(address, None)

    def resting(self) -> list[str]:
        """The addresses skipped now."""
        now = self._clock()
        return [a for a in self.addresses if self._resting_until.get(a, 0.0) > now]
