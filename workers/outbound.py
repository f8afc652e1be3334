"""Fetching a URL someone else gave us (a provider's output) without being turned against
our own network.

Every hop is checked before it is requested: http(s) only, https only outside `DEBUG`,
and every address the host resolves to must be public (no private, loopback, link-local,
reserved or multicast address, IPv4-mapped ones included). Redirects are followed by hand,
at most `MAX_REDIRECTS`, each checked the same way. Hosts in `OUTBOUND_TRUSTED_HOSTS`
(`host` or `host:port`) skip the address and scheme checks: an on-premises provider, or
the local fakes in tests.

The host is resolved once per hop, at the check, and the connection goes to the address
checked (`pinned_request`: the URL names the address, while the Host header, TLS SNI and
certificate check keep the host name), so a DNS answer that changes after the check
(rebinding) cannot send the request elsewhere. Customer webhooks (api/webhooks.py) connect
the same way.
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


def check_url(url: str) -> str | None:
    """Raise UnsafeURL unless `url` may be fetched (see the module's docstring); else the
    checked address to connect to (None for a trusted host: the client resolves it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"not an http(s) URL: {url[:100]!r}")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL(f"bad port in {url[:100]!r}") from exc
    if _trusted(host, parts.port):
        return None
    if parts.scheme != "https" and not settings.DEBUG:
        raise UnsafeURL(f"only https URLs are fetched, not {url[:100]!r}")
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"{host} does not resolve") from exc
    addresses = [str(sockaddr[0]).split("%", 1)[0] for *_rest, sockaddr in answers]
    for address in addresses:
        if not _public(address):
            raise UnsafeURL(f"{host} resolves to a non-public address ({address})")
    if not addresses:
        raise UnsafeURL(f"{host} does not resolve")
    return addresses[0]


def pinned_request(
    client: httpx.Client, method: str, url: str, address: str | None, **kwargs
) -> httpx.Request:
    """A request for `url` that connects to `address` (already checked) instead of letting
    the client resolve the host again; the Host header, TLS SNI and the certificate check
    still use the URL's host. `address` None: the plain request."""
    if address is None:
        return client.build_request(method, url, **kwargs)
    original = httpx.URL(url)
    headers = {**(kwargs.pop("headers", None) or {}), "host": original.netloc.decode("ascii")}
    extensions = {**(kwargs.pop("extensions", None) or {})}
    extensions["sni_hostname"] = original.raw_host.decode("ascii")
    target = original.copy_with(host=address)
    return client.build_request(method, target, headers=headers, extensions=extensions, **kwargs)


@contextmanager
def stream_get(url: str, *, timeout: float) -> Iterator[httpx.Response]:
    """GET `url` as a stream, following redirects only to URLs that pass `check_url`."""
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            address = check_url(url)
            request = pinned_request(client, "GET", url, address)
            response = client.send(request, stream=True)
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
