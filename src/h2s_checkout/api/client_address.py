"""The client's address, for limits: the peer, or X-Forwarded-For when the peer is a proxy
we trust (H2S_TRUSTED_PROXIES). Anyone can send X-Forwarded-For, so it is believed only
from a trusted peer, and then read from the right: the first hop that is not one of our
proxies is the client (hops further left were written by the client itself)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from litestar import Request

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_FORWARDED_FOR = b"x-forwarded-for"


class ClientAddresses:
    def __init__(self, trusted_proxies: Sequence[str]) -> None:
        self._trusted: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in trusted_proxies
        )

    def of(self, scope: Any) -> str | None:
        client = scope.get("client")
        peer: str | None = client[0] if client else None
        if not self._trusted or peer is None or not self._is_trusted(peer):
            return peer
        hops = [
            hop.strip()
            for name, value in scope.get("headers", ())
            if name == _FORWARDED_FOR
            for hop in value.decode("latin-1").split(",")
        ]
        nearest = peer
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                # Not an address: written by the client, not by a proxy. The last address
                # a proxy vouched for is the best we know.
                return nearest
            if not self._is_trusted(hop):
                return hop
            nearest = hop
        return nearest

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)


def client_address(request: Request[Any, Any, Any]) -> str | None:
    resolver: ClientAddresses = request.app.state.client_addresses
    return resolver.of(request.scope)
