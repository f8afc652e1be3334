"""Fetching a URL someone else gave us (a provider's output) without being turned against
our own network.

Every hop is checked before it is requested: http(s) only, https only outside `DEBUG`,
and every address the host resolves to must be public (no private, loopback, link-local,
reserved or multicast address, IPv4-mapped ones included). Redirects are followed by hand,
at most `MAX_REDIRECTS`, each checked the same way. Hosts in `OUTBOUND_TRUSTED_HOSTS`
(`host` or `host:port`) skip the address and scheme checks: an on-premises provider, or
the local fakes in tests.

The address is resolved at the check and again by the HTTP client; a DNS answer that
changes in between (rebinding) is not caught here: run workers behind an egress proxy or
firewall that refuses private ranges as well.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urljoin, urlsplit

import httpx
from django.conf import settings

MAX_REDIRECTS = 5


class UnsafeURL(Exception):
    """The URL (or a redirect on the way) leads somewhere we do not fetch from."""


def _trusted(host: str, port: int | None) -> bool:
    trusted = {entry.lower() for entry in settings.OUTBOUND_TRUSTED_HOSTS}
    return host.lower() in trusted or f"{host.lower()}:{port}" in trusted


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> None:
    """Raise UnsafeURL unless `url` may be fetched (see the module's docstring)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"not an http(s) URL: {url[:100]!r}")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL(f"bad port in {url[:100]!r}") from exc
    if _trusted(host, parts.port):
        return
    if parts.scheme != "https" and not settings.DEBUG:
        raise UnsafeURL(f"only https URLs are fetched, not {url[:100]!r}")
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"{host} does not resolve") from exc
    for *_rest, sockaddr in answers:
        if not _public(str(sockaddr[0])):
            raise UnsafeURL(f"{host} resolves to a non-public address ({sockaddr[0]})")


@contextmanager
def stream_get(url: str, *, timeout: float) -> Iterator[httpx.Response]:
    """GET `url` as a stream, following redirects only to URLs that pass `check_url`."""
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            check_url(url)
            response = client.send(client.build_request("GET", url), stream=True)
            if not response.is_redirect:
                try:
                    yield response
                finally:
                    response.close()
                return
            location = response.headers.get("location", "")
            response.close()
            url = urljoin(url, location)
        raise UnsafeURL(f"more than {MAX_REDIRECTS} redirects")
