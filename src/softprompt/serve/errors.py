"""Every error the API answers, as JSON shaped like OpenAI's: `{"error": {"message", "type", "code", "param"}}`.

So OpenAI clients show the message. The codes:
400 malformed JSON, 401 missing/wrong API key, 404 unknown prompt, 413 too many
or too long inputs (characters or tokens) or too big a body, 415 a POST body
that is not `application/json`, 421 a `Host` header the server does not answer
to, 422 wrong types, empty inputs and values out of range, 429 queue full,
499 the client went away before its answer (only in the log and metrics),
503 timed out, shutting down or too many connections. A 500 would be a bug.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from . import schemas

log = logging.getLogger("softprompt.serve")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse, "description": text}
    for code, text in {
        400: "malformed JSON",
        401: "missing or wrong API key",
        404: "unknown prompt",
        413: "too many or too long inputs, or too big a body",
        415: "the body is not application/json",
        421: "a Host the server does not answer to",
        422: "invalid field values",
        429: "queue full",
        503: "timed out or shutting down",
    }.items()
}
CLIENT_GONE = 499  # nginx's code for "client closed the request": nobody reads it, the metrics do


class APIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, kind: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")


def error_response(
    status: int, message: str, *, param: str | None = None, kind: str | None = None, headers=None, close=False
) -> JSONResponse:
    """The JSON error body; `close` ends the connection after it (for answers given before the body was read)."""
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    body = {"error": {"message": message, "type": kind, "code": status, "param": param}}
    headers = {**(headers or {}), **({"Connection": "close"} if close else {})}
    return JSONResponse(body, status_code=status, headers=headers or None)


def json_needed(content_type: str) -> str:
    got = content_type[:100] or "no Content-Type"
    return f"the request body must be a JSON object sent with 'Content-Type: application/json' (got {got!r})"


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return error_response(e.status, e.message, param=e.param, kind=e.kind, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            detail = next(err for err in errors if err.get("type") == "json_invalid")
            reason = (detail.get("ctx") or {}).get("error", "")
            return error_response(400, f"the request body is not valid JSON{f': {reason}' if reason else ''}")
        body_only = [err for err in errors if tuple(err.get("loc", ())) == ("body",)]
        content_type = request.headers.get("content-type", "")
        if body_only and "json" not in content_type:
            return error_response(400, json_needed(content_type))
        parts, params = [], []
        for err in errors[:5]:
            loc = [str(x) for x in err.get("loc", ()) if x != "body"]
            params.append(".".join(loc))
            parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
        if params and not params[0]:
            params[0] = None
        more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
        return error_response(422, "; ".join(parts) + more, param=params[0] if params else None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        if isinstance(e.__cause__, ClientDisconnect):
            return await client_gone(request, e.__cause__)
        message = e.detail if isinstance(e.detail, str) else json.dumps(e.detail)
        if e.status_code == 404 and message == "Not Found":
            message = f"no endpoint {request.method} {request.url.path}; see /docs or /openapi.json"
        return error_response(e.status_code, message, headers=getattr(e, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, e: ClientDisconnect) -> JSONResponse:
        # The body stopped (the client left, or LimitBody cut it off and answered 413 itself): not a bug.
        return error_response(CLIENT_GONE, "the client went away before the request body was read")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({e.__class__.__name__}); this is a bug in softprompt")
