"""Design files named by an `https://` URL, downloaded by the run that stores them (as print
providers' file APIs take a URL instead of the bytes).

A URL comes from outside (a seller's web app, the upload API), so the download is guarded:
- https only, and every address the host resolves to must be public unless its network is
  allowed by DESIGNFLOW_URL_SOURCES_ALLOW_NETWORKS (a seller's own file server on the LAN);
  the connection goes to the address that was checked (no second lookup to rebind);
- redirects are followed by hand, at most 5, each hop checked the same way;
- the file's size cap (DESIGNFLOW_MAX_FILE_MB) holds before and while reading; the whole
  download has a deadline (DESIGNFLOW_URL_SOURCES_TIMEOUT_SECONDS).
A refused URL, a 4xx answer or a file over the cap is rejected with the reason; a timeout, a
dropped connection or a 5xx fails the file (the next upload tries again).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from designflow.storage.nas import NasEntry, SourceUnreadable

HTTPS_PREFIX = "https://"
MAX_REDIRECTS = 5
CHUNK = 1024 * 1024
# A listing cannot know a URL's size without asking its server: batches count each URL as
# a typical design file.
ASSUMED_SIZE = 8 * 1024 * 1024

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class DownloadFailed(OSError):
    """The download may work later (timeout, dropped connection, 5xx): the file fails."""


def is_url(name: str) -> bool:
    return name.startswith(("https://", "http://"))


def display_url(url: str) -> str:
    """The URL as reports and logs show it: no user info, no query, no fragment (a signed
    URL's signature is a credential of its own)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return repr(url[:80])
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 192.168.1.20` -> networks; ValueError names the bad entry."""
    networks = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        try:
            networks.append(ipaddress.ip_network(raw, strict=False))
        except ValueError:
            raise ValueError(f"not a network or address: {raw!r}") from None
    return tuple(networks)


def _address_problem(address: Address, allowed: Sequence[Network]) -> str | None:
    if any(address in network for network in allowed):
        return None
    for kind, flag in (
        ("a loopback", address.is_loopback), ("a private", address.is_private),
        ("a link-local", address.is_link_local), ("a multicast", address.is_multicast),
        ("a reserved", address.is_reserved), ("an unspecified", address.is_unspecified),
    ):  # fmt: skip
        if flag:
            return (
                f"{kind} address ({address}) is not allowed (DESIGNFLOW_URL_SOURCES_ALLOW_NETWORKS)"
            )
    return None


def _resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SourceUnreadable(f"{host}: cannot resolve it ({exc.strerror})") from None
    seen: list[Address] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen


class UrlSource:
    """Downloads `https://` sources under the guards above. Quacks like the part of a NAS
    that remote sources use (`entries`, `fetch`)."""

    def __init__(
        self,
        allowed_networks: Sequence[Network] = (),
        timeout_s: float = 60.0,
        resolve: Callable[[str, int], list[Address]] = _resolve,
    ) -> None:
        self.allowed = tuple(allowed_networks)
        self.timeout_s = timeout_s
        self.resolve = resolve
        # The system's trust store; SSL_CERT_FILE / SSL_CERT_DIR point elsewhere (OpenSSL's
        # own variables).
        self.tls = ssl.create_default_context()

    def entries(self, url: str) -> list[NasEntry]:
        return [NasEntry(url, ASSUMED_SIZE, 0.0)]

    def fetch(self, url: str, target: Path, max_bytes: int) -> int:
        """Download `url` into `target` (written whole or not at all); returns its size."""
        deadline = time.monotonic() + self.timeout_s
        target.parent.mkdir(parents=True, exist_ok=True)
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            answer = self._get(current, target, max_bytes, deadline)
            if isinstance(answer, int):
                return answer
            current = answer  # a redirect: checked like the first URL
        raise SourceUnreadable(f"{display_url(url)}: more than {MAX_REDIRECTS} redirects")

    def release(self) -> None:
        """Nothing held between downloads (a RemoteLocation's NAS interface)."""

    def close(self) -> None:
        """Nothing held between downloads (a RemoteLocation's NAS interface)."""

    # -- one request --------------------------------------------------------------------

    def _get(self, url: str, target: Path, max_bytes: int, deadline: float) -> int | str:
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise SourceUnreadable(f"{display_url(url)}: only https:// URLs are accepted")
        if parts.username or parts.password:
            raise SourceUnreadable(
                f"{display_url(url)}: user and password in a URL are not accepted"
            )
        host = parts.hostname
        if not host:
            raise SourceUnreadable(f"{display_url(url)}: no host in the URL")
        port = parts.port or 443
        addresses = self.resolve(host, port)
        for address in addresses:  # every address: a host must not hide a private one
            problem = _address_problem(address, self.allowed)
            if problem:
                raise SourceUnreadable(f"{display_url(url)}: {host} resolves to {problem}")
        if not addresses:
            raise SourceUnreadable(f"{display_url(url)}: {host} resolves to no address")
        last_error: Exception | None = None
        for address in addresses:
            try:
                return self._get_from(address, url, target, max_bytes, deadline)
            except httpx.ConnectError as exc:
                last_error = exc
        raise DownloadFailed(f"{display_url(url)}: cannot connect to {host}: {last_error}")

    def _get_from(
        self, address: Address, url: str, target: Path, max_bytes: int, deadline: float
    ) -> int | str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        pinned_host = f"[{address}]" if address.version == 6 else str(address)
        pinned = parts._replace(netloc=f"{pinned_host}:{parts.port or 443}").geturl()
        is_literal = _is_ip(host)
        left = max(0.1, deadline - time.monotonic())
        timeout = httpx.Timeout(min(left, 30.0), connect=min(left, 10.0))
        headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept-Encoding": "identity"}
        extensions = {} if is_literal else {"sni_hostname": host}
        try:
            with httpx.Client(verify=self.tls, timeout=timeout, follow_redirects=False,
                              trust_env=False) as client:  # fmt: skip
                request = client.build_request(
                    "GET", pinned, headers=headers, extensions=extensions
                )
                response = client.send(request, stream=True)
                try:
                    return self._answer(url, response, target, max_bytes, deadline)
                finally:
                    response.close()
        except httpx.ConnectError:
            raise
        except httpx.TimeoutException:
            raise DownloadFailed(
                f"{display_url(url)}: no answer within {self.timeout_s:.0f} s"
            ) from None
        except httpx.TransportError as exc:
            raise DownloadFailed(f"{display_url(url)}: {type(exc).__name__}: {exc}") from None

    def _answer(
        self, url: str, response: httpx.Response, target: Path, max_bytes: int, deadline: float
    ) -> int | str:
        status = response.status_code
        if status in (301, 302, 303, 307, 308):
            location = response.headers.get("location")
            if not location:
                raise SourceUnreadable(f"{display_url(url)}: a redirect without a location")
            return urljoin(url, location)
        if status >= 500 or status == 429:
            raise DownloadFailed(f"{display_url(url)}: the server answered {status}")
        if status != 200:
            raise SourceUnreadable(f"{display_url(url)}: the server answered {status}")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise SourceUnreadable(_too_large(url, max_bytes))
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        size = 0
        try:
            with open(temp, "wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise SourceUnreadable(_too_large(url, max_bytes))
                    if time.monotonic() > deadline:
                        raise DownloadFailed(
                            f"{display_url(url)}: not downloaded within {self.timeout_s:.0f} s"
                        )
                    out.write(chunk)
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        return size


def _too_large(url: str, max_bytes: int) -> str:
    return f"{display_url(url)}: larger than the {max_bytes / 1024 / 1024:g} MB limit for a file"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
