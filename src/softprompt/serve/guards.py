"""Pure ASGI middlewares that refuse a request before (or while) its body is read.

FastAPI reads and parses the whole body before any dependency runs, so a
check written as a dependency comes too late for a 600 MB body. These run
first, on the headers alone, and answer with `Connection: close` so the
server stops reading what the client still sends:

- `RequireApiKey`: 401 unless `Authorization: Bearer <key>` (except public paths).
- `RequireJson`: 415 for a POST under the given prefixes whose body is not
  `application/json`. A web page can send a "simple" cross-site request
  (text/plain, a form) without asking the server first; it cannot send JSON.
- `LimitBody`: counts the bytes of the body as they arrive and answers 413 as
  soon as they pass the cap, whether or not a Content-Length was sent
  (a chunked body has none); the app then sees the client as gone.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from .errors import error_response, json_needed

PUBLIC_PATHS = frozenset({"/health", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def _header(scope, name: bytes) -> str | None:
    value = dict(scope.get("headers") or []).get(name)
    return None if value is None else value.decode("latin-1")


class RequireApiKey:
    def __init__(self, app, *, api_key: str, public: frozenset[str] = PUBLIC_PATHS):
        self.app, self.key, self.public = app, api_key.encode(), public

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.public:
            scheme, _, credentials = (_header(scope, b"authorization") or "").partition(" ")
            problem = None
            if scheme.lower() != "bearer" or not credentials.strip():
                problem = "missing API key: send 'Authorization: Bearer <key>'"
            elif not hmac.compare_digest(credentials.strip().encode("latin-1"), self.key):
                problem = "wrong API key"
            if problem:
                response = error_response(
                    401, problem, kind="authentication_error", headers={"WWW-Authenticate": "Bearer"}, close=True
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequireJson:
    def __init__(self, app, *, prefixes: tuple[str, ...]):
        self.app, self.prefixes = app, prefixes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(self.prefixes):
            content_type = _header(scope, b"content-type") or ""
            media = content_type.partition(";")[0].strip().lower()
            if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
                await error_response(415, json_needed(content_type), close=True)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class LimitBody:
    """413 once more than `max_bytes` of body have arrived; `on_bytes(n)` hears every chunk passed on."""

    def __init__(self, app, *, max_bytes: int, on_bytes: Callable[[int], None] | None = None):
        self.app, self.max_bytes, self.on_bytes = app, max_bytes, on_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = error_response(413, f"the request body is larger than {self.max_bytes} bytes", close=True)
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await too_big(scope, receive, send)
            return
        received, cut, started = 0, False, False

        async def counted_receive():
            nonlocal received, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    cut = True
                    if not started:
                        await too_big(scope, receive, send)
                    return {"type": "http.disconnect"}  # the app stops reading, as if the client had left
                if self.on_bytes is not None:
                    self.on_bytes(len(message.get("body", b"")))
            return message

        async def guarded_send(message) -> None:
            nonlocal started
            if cut:
                return  # the app's answer to a body it never got: the client has its 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, guarded_send)
