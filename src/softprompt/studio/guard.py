"""Cross-site protection for the studio's state-changing requests.

The studio runs on the user's machine while they browse: any page they visit
can send requests to 127.0.0.1. Requests that change something (POST, DELETE
under /studio/api) must therefore:

- carry the per-process secret token in the `X-Studio-Token` header. The page
  reads it from the HTML it is served; another site cannot read that page
  (same-origin policy), and a custom header also forces a CORS preflight, which
  the studio never grants;
- come from the studio's own origin when the browser says where they come from
  (`Origin`, else `Referer`); clients that send neither (scripts, curl) need
  only the token;
- be JSON (`Content-Type: application/json`) where the endpoint reads JSON, so
  a `text/plain` form post cannot pass for a job.

DNS rebinding (a foreign name resolving to 127.0.0.1) is stopped by the
server's Host allow-list, not here: to the browser that page is same-origin.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request

from ..serve.app import APIError

TOKEN_HEADER = "X-Studio-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestGuard:
    """A FastAPI dependency refusing cross-site or token-less state changes; one secret per process."""

    def __init__(self, token: str | None = None):
        self.token = token or secrets.token_urlsafe(32)

    async def __call__(self, request: Request) -> None:
        if request.method in SAFE_METHODS:
            return
        claimed = request.headers.get("origin") or _origin_of(request.headers.get("referer"))
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if claimed is not None and claimed.lower() != own.lower():
            raise APIError(
                403, f"cross-site request refused: it comes from {claimed[:100]}, not {own}", kind="permission_error"
            )
        sent = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(sent.encode(), self.token.encode()):
            raise APIError(
                403,
                f"missing or wrong {TOKEN_HEADER} header: requests that change the studio need the token "
                "from its page (reload the page)",
                kind="permission_error",
            )


async def require_json(request: Request) -> None:
    """Refuse a body that is not declared JSON where the endpoint reads JSON."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise APIError(415, f"send the body as JSON (Content-Type: application/json), not {kind or 'no type'}")


def _origin_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"
