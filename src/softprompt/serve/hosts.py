"""HostCheck: answer only requests whose `Host` header names this server (against DNS rebinding).

A web page the user visits can make its own host name resolve to 127.0.0.1
and then read a loopback server as "same origin": the browser still sends the
page's name in `Host`. Refusing every Host that is not one of ours (port
ignored) closes that door. The default is the loopback names, right for a
server bound to loopback; `("*",)` turns the check off. Pure ASGI, so any app
(the studio builds on `create_app`) gets it.
"""

from __future__ import annotations

import re

ANY_HOST = "*"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_NAME = re.compile(r"[a-z0-9_.\-]+|[0-9a-f:.]+")  # a DNS name, an IPv4 or an IPv6 address (no brackets)


def host_problem(host: str) -> str | None:
    """Why `host` cannot be an allowed-hosts entry, or None if it can."""
    if host == ANY_HOST or _NAME.fullmatch(host):
        return None
    return f"{host[:64]!r} is not a host name or address (give names without port or brackets, or '{ANY_HOST}')"


def host_name(header: str) -> str:
    """The host of a `Host` header value, lower-cased, without port or IPv6 brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class HostCheck:
    """ASGI middleware: 421 for a request whose Host is not in `allowed` (before anything else runs)."""

    def __init__(self, app, *, allowed: tuple[str, ...]):
        self.app, self.allowed = app, frozenset(allowed)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and ANY_HOST not in self.allowed:
            header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if host_name(header) not in self.allowed:
                # Imported here: serve/config.py (and so `softprompt serve --help`) reads this module's names,
                # and the --help must not import fastapi (tests/test_cli.py).
                from .errors import error_response

                shown = header[:100] or "none"
                response = error_response(
                    421,
                    f"this server does not answer to Host {shown!r} (allowed: {', '.join(sorted(self.allowed))}; "
                    "see --allowed-hosts)",
                    kind="misdirected_request",
                    close=True,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
