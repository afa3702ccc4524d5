"""What a trusted reverse proxy says of the client's request: scheme, address and host.

uvicorn's `ProxyHeadersMiddleware` believes `X-Forwarded-Proto` and `X-Forwarded-For` from a
trusted peer but not `X-Forwarded-Host`, which a proxy that sends its upstream's name as `Host`
(Traefik with `passHostHeader: false`, an ingress rewriting the host, Envoy) gives the client's
host in. The file URLs the API hands out are absolute, built from the request's host, so behind
such a proxy they would name the upstream address, which no client can reach.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

# A host name or address with an optional port: what a Host header may hold and nothing that
# could carry a path, credentials or a second header into the URLs built from it.
_HOST = re.compile(rb"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


class ForwardedMiddleware:
    """`app` behind the proxies `trusted_hosts` names (comma-separated addresses or networks,
    `*` for any): their `X-Forwarded-Proto` and `X-Forwarded-For` as uvicorn reads them, and
    the last `X-Forwarded-Host` value as the request's `Host`: the one the adjacent, trusted
    proxy wrote. Earlier values are whatever reached that proxy, the client's own header
    included where a proxy appends to it, as uvicorn believes only the right end of
    `X-Forwarded-For`. Anyone else's forwarded headers are ignored."""

    def __init__(self, app: ASGIApp, *, trusted_hosts: str) -> None:
        self._proxied = ProxyHeadersMiddleware(app, trusted_hosts=trusted_hosts)  # type: ignore[arg-type]
        self._trusted = self._proxied.trusted_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Read before uvicorn's middleware replaces the peer with the forwarded client address.
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and client[0] in self._trusted:
            forwarded = b",".join(
                value for name, value in scope["headers"] if name == b"x-forwarded-host"
            )
            host = forwarded.rsplit(b",", 1)[-1].strip()
            if _HOST.fullmatch(host):
                headers = [(name, value) for name, value in scope["headers"] if name != b"host"]
                scope = {**scope, "headers": [*headers, (b"host", host)]}
        await self._proxied(scope, receive, send)  # type: ignore[arg-type]
